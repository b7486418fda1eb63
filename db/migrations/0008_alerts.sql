CREATE TABLE "etl_alert_state" (
	"subject" text PRIMARY KEY NOT NULL,
	"state" text NOT NULL,
	"since" timestamp with time zone DEFAULT now() NOT NULL,
	"count" integer DEFAULT 1 NOT NULL,
	"ref" text,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "etl_alerts" (
	"id" uuid PRIMARY KEY NOT NULL,
	"type" text NOT NULL,
	"occurred_at" timestamp with time zone DEFAULT now() NOT NULL,
	"pipeline_id" text,
	"run_id" uuid,
	"dataset" text,
	"summary" text NOT NULL,
	"details" jsonb,
	"state" text DEFAULT 'pending' NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"next_attempt_at" timestamp with time zone DEFAULT now() NOT NULL,
	"lease_until" timestamp with time zone,
	"claimed_by" text,
	"last_error" text,
	"last_status" integer,
	"delivered_at" timestamp with time zone
);
--> statement-breakpoint
CREATE INDEX "etl_alerts_due_idx" ON "etl_alerts" USING btree ("next_attempt_at") WHERE "etl_alerts"."state" = 'pending';--> statement-breakpoint
CREATE INDEX "etl_alerts_occurred_idx" ON "etl_alerts" USING btree ("occurred_at" DESC NULLS LAST);