CREATE TABLE "key_rotation_nodes" (
	"rotation_id" uuid NOT NULL,
	"node_id" uuid NOT NULL,
	"node_name" text NOT NULL,
	"state" text DEFAULT 'active' NOT NULL,
	"reached" text,
	"survey" jsonb,
	"error" text,
	"deferred_at" timestamp with time zone,
	CONSTRAINT "key_rotation_nodes_rotation_id_node_id_pk" PRIMARY KEY("rotation_id","node_id")
);
--> statement-breakpoint
CREATE TABLE "key_rotations" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"number" bigserial NOT NULL,
	"state" text DEFAULT 'running' NOT NULL,
	"phase" text DEFAULT 'survey' NOT NULL,
	"phase_run_id" uuid,
	"catch_up_run_id" uuid,
	"old_credential_id" uuid,
	"new_credential_id" uuid,
	"safety_net_credential_id" uuid,
	"remove_safety_net" boolean DEFAULT false NOT NULL,
	"phases" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"aborted_phase" text,
	"abort_reason" text,
	"created_by" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"ended_at" timestamp with time zone,
	CONSTRAINT "key_rotations_number_unique" UNIQUE("number")
);
--> statement-breakpoint
ALTER TABLE "key_rotation_nodes" ADD CONSTRAINT "key_rotation_nodes_rotation_id_key_rotations_id_fk" FOREIGN KEY ("rotation_id") REFERENCES "public"."key_rotations"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "key_rotation_nodes" ADD CONSTRAINT "key_rotation_nodes_node_id_nodes_id_fk" FOREIGN KEY ("node_id") REFERENCES "public"."nodes"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "key_rotations" ADD CONSTRAINT "key_rotations_old_credential_id_credentials_id_fk" FOREIGN KEY ("old_credential_id") REFERENCES "public"."credentials"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "key_rotations" ADD CONSTRAINT "key_rotations_new_credential_id_credentials_id_fk" FOREIGN KEY ("new_credential_id") REFERENCES "public"."credentials"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "key_rotations" ADD CONSTRAINT "key_rotations_safety_net_credential_id_credentials_id_fk" FOREIGN KEY ("safety_net_credential_id") REFERENCES "public"."credentials"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "key_rotation_nodes_node_idx" ON "key_rotation_nodes" USING btree ("node_id");