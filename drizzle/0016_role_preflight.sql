ALTER TABLE "code_roles" ADD COLUMN "signatures" jsonb;--> statement-breakpoint
ALTER TABLE "code_roles" ADD COLUMN "readiness_check" jsonb;--> statement-breakpoint
ALTER TABLE "code_roles" ADD COLUMN "snapshot" jsonb;--> statement-breakpoint
ALTER TABLE "code_roles" ADD COLUMN "quiesce" jsonb;