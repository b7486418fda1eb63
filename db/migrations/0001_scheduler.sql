CREATE TABLE "etl_schedule_ticks" (
	"pipeline_id" text NOT NULL,
	"scheduled_for" timestamp with time zone NOT NULL,
	"outcome" text NOT NULL,
	"run_id" uuid,
	"catch_up" boolean DEFAULT false NOT NULL,
	"detail" text,
	"claimed_by" text,
	"recorded_at" timestamp with time zone DEFAULT now() NOT NULL,
	"lag_ms" integer,
	CONSTRAINT "etl_schedule_ticks_pipeline_id_scheduled_for_pk" PRIMARY KEY("pipeline_id","scheduled_for")
);
--> statement-breakpoint
ALTER TABLE "etl_pipelines" ADD COLUMN "schedule_cursor" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "etl_schedule_ticks" ADD CONSTRAINT "etl_schedule_ticks_pipeline_id_etl_pipelines_id_fk" FOREIGN KEY ("pipeline_id") REFERENCES "public"."etl_pipelines"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "etl_schedule_ticks_pending_idx" ON "etl_schedule_ticks" USING btree ("recorded_at") WHERE "etl_schedule_ticks"."outcome" = 'pending';