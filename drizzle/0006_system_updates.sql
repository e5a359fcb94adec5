CREATE TABLE "sys_candidate_versions" (
	"name" text NOT NULL,
	"arch" text NOT NULL,
	"version" text NOT NULL,
	"security" boolean NOT NULL,
	"first_seen_at" timestamp with time zone DEFAULT now() NOT NULL,
	"first_node_id" uuid,
	CONSTRAINT "sys_candidate_versions_name_arch_version_pk" PRIMARY KEY("name","arch","version")
);
--> statement-breakpoint
CREATE TABLE "sys_holds" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"scope" text NOT NULL,
	"target" text NOT NULL,
	"pattern" text NOT NULL,
	"reason" text,
	"created_by" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "sys_node_scans" (
	"node_id" uuid PRIMARY KEY NOT NULL,
	"scanned_at" timestamp with time zone,
	"pending_count" integer DEFAULT 0 NOT NULL,
	"security_count" integer DEFAULT 0 NOT NULL,
	"reboot_required" boolean DEFAULT false NOT NULL,
	"reboot_packages" text[] DEFAULT '{}'::text[] NOT NULL,
	"services_to_restart" text[],
	"held" text[] DEFAULT '{}'::text[] NOT NULL,
	"last_error" text,
	"last_error_at" timestamp with time zone,
	"last_run_id" uuid,
	"update_error" text,
	"update_failed_at" timestamp with time zone,
	"update_run_id" uuid
);
--> statement-breakpoint
CREATE TABLE "sys_pending_packages" (
	"node_id" uuid NOT NULL,
	"name" text NOT NULL,
	"arch" text NOT NULL,
	"installed" text NOT NULL,
	"candidate" text NOT NULL,
	"suites" text[] NOT NULL,
	"security" boolean NOT NULL,
	"security_reason" text,
	CONSTRAINT "sys_pending_packages_node_id_name_arch_pk" PRIMARY KEY("node_id","name","arch")
);
--> statement-breakpoint
CREATE TABLE "sys_reboots" (
	"run_id" uuid NOT NULL,
	"node_id" uuid NOT NULL,
	"node_name" text NOT NULL,
	"roles" text[] NOT NULL,
	"state" text NOT NULL,
	"reason" text,
	"started_at" timestamp with time zone DEFAULT now() NOT NULL,
	"ended_at" timestamp with time zone,
	CONSTRAINT "sys_reboots_run_id_node_id_pk" PRIMARY KEY("run_id","node_id")
);
--> statement-breakpoint
CREATE TABLE "sys_schedules" (
	"name" text PRIMARY KEY NOT NULL,
	"last_fired_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "sys_windows" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"scope" text NOT NULL,
	"target" text NOT NULL,
	"start" text NOT NULL,
	"end" text NOT NULL,
	"time_zone" text NOT NULL,
	"days" integer[] NOT NULL,
	"skip_until" timestamp with time zone,
	"created_by" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "sys_candidate_versions" ADD CONSTRAINT "sys_candidate_versions_first_node_id_nodes_id_fk" FOREIGN KEY ("first_node_id") REFERENCES "public"."nodes"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "sys_node_scans" ADD CONSTRAINT "sys_node_scans_node_id_nodes_id_fk" FOREIGN KEY ("node_id") REFERENCES "public"."nodes"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "sys_pending_packages" ADD CONSTRAINT "sys_pending_packages_node_id_nodes_id_fk" FOREIGN KEY ("node_id") REFERENCES "public"."nodes"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "sys_reboots" ADD CONSTRAINT "sys_reboots_node_id_nodes_id_fk" FOREIGN KEY ("node_id") REFERENCES "public"."nodes"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "sys_holds_unique" ON "sys_holds" USING btree ("scope","target","pattern");--> statement-breakpoint
CREATE UNIQUE INDEX "sys_windows_target" ON "sys_windows" USING btree ("scope","target");