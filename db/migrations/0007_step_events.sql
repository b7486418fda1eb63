ALTER TABLE "etl_step_attempts" ADD COLUMN "events" jsonb DEFAULT '[]'::jsonb NOT NULL;--> statement-breakpoint
ALTER TABLE "etl_step_attempts" ADD COLUMN "events_dropped" integer DEFAULT 0 NOT NULL;