CREATE TABLE "releases" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"version" text NOT NULL,
	"sha" text NOT NULL,
	"channel" text NOT NULL,
	"migrations_required" boolean NOT NULL,
	"breaking_changes" text,
	"released_at" timestamp with time zone NOT NULL,
	"signature" text NOT NULL,
	"algorithm" text NOT NULL,
	"verified_by" text NOT NULL,
	"manifest" jsonb NOT NULL,
	"created_by" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "rollout_nodes" (
	"rollout_id" uuid NOT NULL,
	"node_id" uuid NOT NULL,
	"node_name" text NOT NULL,
	"stage" integer NOT NULL,
	"state" text DEFAULT 'pending' NOT NULL,
	"previous" jsonb,
	"error" text,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "rollout_nodes_rollout_id_node_id_pk" PRIMARY KEY("rollout_id","node_id")
);
--> statement-breakpoint
CREATE TABLE "rollouts" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"number" bigserial NOT NULL,
	"release_id" uuid NOT NULL,
	"target" jsonb NOT NULL,
	"strategy" text NOT NULL,
	"stages" jsonb NOT NULL,
	"current_stage" integer DEFAULT -1 NOT NULL,
	"failure_threshold_percent" integer NOT NULL,
	"min_finished_nodes" integer NOT NULL,
	"concurrency" integer NOT NULL,
	"require_approval" boolean NOT NULL,
	"start_at" timestamp with time zone,
	"state" text NOT NULL,
	"reason" text,
	"rollback_run_id" uuid,
	"created_by" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"ended_at" timestamp with time zone,
	CONSTRAINT "rollouts_number_unique" UNIQUE("number")
);
--> statement-breakpoint
ALTER TABLE "rollout_nodes" ADD CONSTRAINT "rollout_nodes_rollout_id_rollouts_id_fk" FOREIGN KEY ("rollout_id") REFERENCES "public"."rollouts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "rollout_nodes" ADD CONSTRAINT "rollout_nodes_node_id_nodes_id_fk" FOREIGN KEY ("node_id") REFERENCES "public"."nodes"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "rollouts" ADD CONSTRAINT "rollouts_release_id_releases_id_fk" FOREIGN KEY ("release_id") REFERENCES "public"."releases"("id") ON DELETE restrict ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "releases_version" ON "releases" USING btree ("version");--> statement-breakpoint
CREATE INDEX "releases_sha_idx" ON "releases" USING btree ("sha");--> statement-breakpoint
CREATE INDEX "rollout_nodes_node_idx" ON "rollout_nodes" USING btree ("node_id");--> statement-breakpoint
CREATE INDEX "rollouts_state_idx" ON "rollouts" USING btree ("state");