/**
 * The size a staged chunk is cut at. 1 MB, measured on 2026-12-02 beside 2 MB:
 * - the same throughput on the 1M-row pipeline bench (within its noise);
 * - about 30 MB less worker peak RSS (169–177 vs 200–201 MB at 1M rows);
 * - less Postgres CPU. Alone, on 64 MB of bench rows with two in flight (as staging
 *   does), chunks of 2 MB and over cost a Postgres backend 0.9–1.2 s to insert and as
 *   much to read back, against 0.2–0.3 s and 0.1 s at 1 MB (512 KB: the same as 1 MB;
 *   64 KB: costlier again per byte).
 * The ClickHouse source cuts its raw chunks at the same size (sources/clickhouse.ts), and
 * staging never puts two of its pieces in one chunk past this size (staging.ts writeBytes).
 */
export const STAGING_CHUNK_BYTES = 1024 * 1024;
