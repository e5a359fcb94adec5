ALTER TABLE "sys_schedules" ADD COLUMN "cron" text;--> statement-breakpoint
ALTER TABLE "sys_schedules" ADD COLUMN "time_zone" text;