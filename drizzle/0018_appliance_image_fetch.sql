ALTER TABLE "appliance_images" ADD COLUMN "source_url" text;--> statement-breakpoint
ALTER TABLE "appliance_images" ADD COLUMN "fetch_attempts" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "appliance_images" ADD COLUMN "error" text;