ALTER TABLE "code_roles" ADD COLUMN "commands" jsonb;--> statement-breakpoint
ALTER TABLE "rollouts" ADD COLUMN "respect_windows" boolean DEFAULT false NOT NULL;