CREATE TABLE "etl_audit_log" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"at" timestamp with time zone DEFAULT now() NOT NULL,
	"actor" jsonb NOT NULL,
	"action" text NOT NULL,
	"pipeline_id" text,
	"run_id" uuid,
	"details" jsonb
);
--> statement-breakpoint
ALTER TABLE "etl_runs" ADD COLUMN "triggered_by" jsonb;--> statement-breakpoint
CREATE INDEX "etl_audit_log_pipeline_idx" ON "etl_audit_log" USING btree ("pipeline_id","id" DESC NULLS LAST);--> statement-breakpoint
CREATE INDEX "etl_audit_log_run_idx" ON "etl_audit_log" USING btree ("run_id");