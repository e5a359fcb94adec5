CREATE TABLE "code_commits" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"role" text NOT NULL,
	"commit" text NOT NULL,
	"branch" text,
	"message" text,
	"author" text,
	"notified_by" text NOT NULL,
	"notified_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "code_roles" (
	"name" text PRIMARY KEY NOT NULL,
	"description" text DEFAULT '' NOT NULL,
	"method" text DEFAULT 'git' NOT NULL,
	"path" text NOT NULL,
	"source_repo" text,
	"branch" text DEFAULT 'main' NOT NULL,
	"units" text[] DEFAULT '{}'::text[] NOT NULL,
	"install_command" text[] DEFAULT '{}'::text[] NOT NULL,
	"restart_command" text[] DEFAULT '{}'::text[] NOT NULL,
	"health" jsonb DEFAULT '{"type":"units"}'::jsonb NOT NULL,
	"health_timeout_seconds" integer DEFAULT 30 NOT NULL,
	"sort_order" integer DEFAULT 100 NOT NULL,
	"latest_commit" text,
	"latest_message" text,
	"latest_author" text,
	"latest_at" timestamp with time zone,
	"auto_update" boolean DEFAULT false NOT NULL,
	"auto_update_interval_minutes" integer DEFAULT 60 NOT NULL,
	"auto_update_max_failures_per_day" integer DEFAULT 3 NOT NULL,
	"auto_update_disabled_reason" text,
	"auto_update_last_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "node_code_versions" (
	"node_id" uuid NOT NULL,
	"role" text NOT NULL,
	"commit" text,
	"previous_commit" text,
	"synced_at" timestamp with time zone,
	"last_error" text,
	"failed_commit" text,
	"failed_at" timestamp with time zone,
	"failed_run_id" uuid,
	"healthy" boolean,
	"health_error" text,
	"health_checked_at" timestamp with time zone,
	CONSTRAINT "node_code_versions_node_id_role_pk" PRIMARY KEY("node_id","role")
);
--> statement-breakpoint
CREATE TABLE "schedules" (
	"name" text PRIMARY KEY NOT NULL,
	"next_at" timestamp with time zone NOT NULL,
	"last_started_at" timestamp with time zone,
	"last_ended_at" timestamp with time zone,
	"last_result" jsonb
);
--> statement-breakpoint
ALTER TABLE "code_commits" ADD CONSTRAINT "code_commits_role_code_roles_name_fk" FOREIGN KEY ("role") REFERENCES "public"."code_roles"("name") ON DELETE cascade ON UPDATE cascade;--> statement-breakpoint
ALTER TABLE "node_code_versions" ADD CONSTRAINT "node_code_versions_node_id_nodes_id_fk" FOREIGN KEY ("node_id") REFERENCES "public"."nodes"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "node_code_versions" ADD CONSTRAINT "node_code_versions_role_code_roles_name_fk" FOREIGN KEY ("role") REFERENCES "public"."code_roles"("name") ON DELETE cascade ON UPDATE cascade;--> statement-breakpoint
CREATE UNIQUE INDEX "code_commits_role_commit" ON "code_commits" USING btree ("role","commit");--> statement-breakpoint
CREATE INDEX "code_commits_role_idx" ON "code_commits" USING btree ("role","id");