CREATE TABLE "appliance_bad_releases" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"release_id" uuid NOT NULL,
	"hardware" text NOT NULL,
	"node_name" text NOT NULL,
	"reason" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"cleared_at" timestamp with time zone,
	"cleared_by" text
);
--> statement-breakpoint
CREATE TABLE "appliance_images" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"release_id" uuid NOT NULL,
	"sha256" text NOT NULL,
	"size" bigint NOT NULL,
	"signature" text NOT NULL,
	"verified_by" text NOT NULL,
	"state" text DEFAULT 'receiving' NOT NULL,
	"received_bytes" bigint DEFAULT 0 NOT NULL,
	"created_by" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "appliance_updates" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"task_id" uuid NOT NULL,
	"run_id" uuid NOT NULL,
	"node_id" uuid NOT NULL,
	"image_id" uuid NOT NULL,
	"rollout_id" uuid,
	"state" text DEFAULT 'pending' NOT NULL,
	"bytes" bigint DEFAULT 0 NOT NULL,
	"total" bigint DEFAULT 0 NOT NULL,
	"from_slot" text,
	"to_slot" text,
	"error" text,
	"fallback" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "appliance_bad_releases" ADD CONSTRAINT "appliance_bad_releases_release_id_releases_id_fk" FOREIGN KEY ("release_id") REFERENCES "public"."releases"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "appliance_images" ADD CONSTRAINT "appliance_images_release_id_releases_id_fk" FOREIGN KEY ("release_id") REFERENCES "public"."releases"("id") ON DELETE restrict ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "appliance_updates" ADD CONSTRAINT "appliance_updates_node_id_nodes_id_fk" FOREIGN KEY ("node_id") REFERENCES "public"."nodes"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "appliance_updates" ADD CONSTRAINT "appliance_updates_image_id_appliance_images_id_fk" FOREIGN KEY ("image_id") REFERENCES "public"."appliance_images"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "appliance_bad_releases_release_hardware" ON "appliance_bad_releases" USING btree ("release_id","hardware");--> statement-breakpoint
CREATE UNIQUE INDEX "appliance_images_release" ON "appliance_images" USING btree ("release_id");--> statement-breakpoint
CREATE UNIQUE INDEX "appliance_updates_task" ON "appliance_updates" USING btree ("task_id");--> statement-breakpoint
CREATE INDEX "appliance_updates_node_idx" ON "appliance_updates" USING btree ("node_id");