CREATE TABLE "etl_step_rejects" (
	"run_id" uuid NOT NULL,
	"step_key" text NOT NULL,
	"dataset" text NOT NULL,
	"row" integer NOT NULL,
	"page" integer,
	"reason" text NOT NULL,
	"path" text,
	"value" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "etl_step_rejects_run_id_step_key_dataset_row_pk" PRIMARY KEY("run_id","step_key","dataset","row")
);
--> statement-breakpoint
CREATE TABLE "etl_table_sinks" (
	"table_name" text PRIMARY KEY NOT NULL,
	"pipeline_id" text NOT NULL,
	"run_id" uuid NOT NULL,
	"rows" integer NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "etl_run_steps" ADD COLUMN "rows_rejected" integer;--> statement-breakpoint
ALTER TABLE "etl_step_rejects" ADD CONSTRAINT "etl_step_rejects_run_id_etl_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."etl_runs"("id") ON DELETE cascade ON UPDATE no action;