ALTER TABLE "code_commits" ADD COLUMN "tag" text;--> statement-breakpoint
ALTER TABLE "code_roles" ADD COLUMN "follow_tags" text;