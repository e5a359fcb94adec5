CREATE TABLE "sys_staged_updates" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"state" text DEFAULT 'running' NOT NULL,
	"stages" jsonb NOT NULL,
	"current" integer DEFAULT 0 NOT NULL,
	"soak_seconds" integer NOT NULL,
	"request" jsonb NOT NULL,
	"next_start_at" timestamp with time zone,
	"reason" text,
	"actor" jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE INDEX "sys_staged_updates_state_idx" ON "sys_staged_updates" USING btree ("state");