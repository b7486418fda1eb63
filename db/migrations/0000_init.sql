CREATE TABLE "etl_blobs" (
	"run_id" uuid NOT NULL,
	"name" text NOT NULL,
	"seq" integer NOT NULL,
	"rows" integer DEFAULT 0 NOT NULL,
	"data" "bytea" NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "etl_blobs_run_id_name_seq_pk" PRIMARY KEY("run_id","name","seq")
);
--> statement-breakpoint
CREATE TABLE "etl_pipelines" (
	"id" text PRIMARY KEY NOT NULL,
	"workflow" text NOT NULL,
	"description" text DEFAULT '' NOT NULL,
	"cron" text NOT NULL,
	"timezone" text DEFAULT 'UTC' NOT NULL,
	"enabled" boolean DEFAULT false NOT NULL,
	"config" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"concurrency" text DEFAULT 'forbid' NOT NULL,
	"catchup" text DEFAULT 'none' NOT NULL,
	"catchup_cap" integer DEFAULT 10 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "etl_run_steps" (
	"run_id" uuid NOT NULL,
	"key" text NOT NULL,
	"position" integer NOT NULL,
	"status" text DEFAULT 'pending' NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"started_at" timestamp with time zone,
	"finished_at" timestamp with time zone,
	"rows_in" integer,
	"rows_out" integer,
	"error" text,
	"error_stack" text,
	"checkpoint" jsonb,
	"output" jsonb,
	"job_id" text,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "etl_run_steps_run_id_key_pk" PRIMARY KEY("run_id","key")
);
--> statement-breakpoint
CREATE TABLE "etl_runs" (
	"id" uuid PRIMARY KEY NOT NULL,
	"pipeline_id" text NOT NULL,
	"status" text NOT NULL,
	"trigger" text NOT NULL,
	"scheduled_for" timestamp with time zone,
	"params" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"started_at" timestamp with time zone,
	"finished_at" timestamp with time zone,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"error" text,
	"rows" jsonb,
	"parent_run_id" uuid,
	"generation" integer DEFAULT 0 NOT NULL,
	"exclusive" boolean DEFAULT true NOT NULL
);
--> statement-breakpoint
CREATE TABLE "etl_step_attempts" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"run_id" uuid NOT NULL,
	"step_key" text NOT NULL,
	"attempt" integer NOT NULL,
	"status" text NOT NULL,
	"started_at" timestamp with time zone DEFAULT now() NOT NULL,
	"finished_at" timestamp with time zone,
	"error" text,
	"error_stack" text,
	"worker" text
);
--> statement-breakpoint
ALTER TABLE "etl_blobs" ADD CONSTRAINT "etl_blobs_run_id_etl_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."etl_runs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "etl_run_steps" ADD CONSTRAINT "etl_run_steps_run_id_etl_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."etl_runs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "etl_runs" ADD CONSTRAINT "etl_runs_pipeline_id_etl_pipelines_id_fk" FOREIGN KEY ("pipeline_id") REFERENCES "public"."etl_pipelines"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "etl_step_attempts" ADD CONSTRAINT "etl_step_attempts_run_id_etl_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."etl_runs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "etl_runs_schedule_tick_uq" ON "etl_runs" USING btree ("pipeline_id","scheduled_for") WHERE "etl_runs"."trigger" = 'schedule';--> statement-breakpoint
CREATE UNIQUE INDEX "etl_runs_one_active_uq" ON "etl_runs" USING btree ("pipeline_id") WHERE "etl_runs"."exclusive" and "etl_runs"."status" in ('queued', 'running');--> statement-breakpoint
CREATE INDEX "etl_runs_pipeline_created_idx" ON "etl_runs" USING btree ("pipeline_id","created_at" DESC NULLS LAST,"id" DESC NULLS LAST);--> statement-breakpoint
CREATE INDEX "etl_runs_active_idx" ON "etl_runs" USING btree ("status") WHERE "etl_runs"."status" in ('queued', 'running');--> statement-breakpoint
CREATE UNIQUE INDEX "etl_step_attempts_uq" ON "etl_step_attempts" USING btree ("run_id","step_key","attempt");