ALTER TABLE "nodes" ALTER COLUMN "policy" DROP DEFAULT;--> statement-breakpoint
ALTER TABLE "nodes" ALTER COLUMN "policy" DROP NOT NULL;--> statement-breakpoint
ALTER TABLE "code_roles" ADD COLUMN "update_policy" text;