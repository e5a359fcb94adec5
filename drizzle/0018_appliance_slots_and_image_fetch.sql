CREATE TABLE "appliance_slots" (
	"node_id" uuid PRIMARY KEY NOT NULL,
	"active" text NOT NULL,
	"next" text NOT NULL,
	"good" text NOT NULL,
	"tries" integer NOT NULL,
	"boots" integer NOT NULL,
	"fallback" text,
	"skip_window" boolean NOT NULL,
	"slot_a" text,
	"slot_b" text,
	"gate_slot" text,
	"gate_passed" boolean,
	"gate_failed_checks" jsonb,
	"gate_seen_at" timestamp with time zone,
	"reported_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "appliance_images" ADD COLUMN "source_url" text;--> statement-breakpoint
ALTER TABLE "appliance_images" ADD COLUMN "fetch_attempts" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "appliance_images" ADD COLUMN "error" text;--> statement-breakpoint
ALTER TABLE "appliance_slots" ADD CONSTRAINT "appliance_slots_node_id_nodes_id_fk" FOREIGN KEY ("node_id") REFERENCES "public"."nodes"("id") ON DELETE cascade ON UPDATE no action;