CREATE TABLE "role_commit_checks" (
	"node_id" uuid NOT NULL,
	"role" text NOT NULL,
	"commit" text NOT NULL,
	"found" boolean NOT NULL,
	"checked_at" timestamp with time zone NOT NULL,
	CONSTRAINT "role_commit_checks_node_id_role_pk" PRIMARY KEY("node_id","role")
);
--> statement-breakpoint
ALTER TABLE "role_commit_checks" ADD CONSTRAINT "role_commit_checks_node_id_nodes_id_fk" FOREIGN KEY ("node_id") REFERENCES "public"."nodes"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "role_commit_checks" ADD CONSTRAINT "role_commit_checks_role_code_roles_name_fk" FOREIGN KEY ("role") REFERENCES "public"."code_roles"("name") ON DELETE cascade ON UPDATE cascade;--> statement-breakpoint
CREATE INDEX "role_commit_checks_role_commit" ON "role_commit_checks" USING btree ("role","commit");