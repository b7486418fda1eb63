CREATE TABLE "bq_projects" (
	"project_id" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"status" text,
	"owner_email" text,
	"budget_usd" double precision,
	"created_at" timestamp with time zone,
	"updated_at" timestamp with time zone,
	"source_updated_at" timestamp with time zone,
	"last_run_id" uuid,
	"synced_at" timestamp with time zone DEFAULT now() NOT NULL
);
