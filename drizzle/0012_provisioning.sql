CREATE TABLE "node_provisioning" (
	"node_id" uuid NOT NULL,
	"role" text NOT NULL,
	"deps_installed_at" timestamp with time zone,
	"provisioned_at" timestamp with time zone,
	"last_run_id" uuid,
	"last_error" text,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "node_provisioning_node_id_role_pk" PRIMARY KEY("node_id","role")
);
--> statement-breakpoint
CREATE TABLE "role_provisioning" (
	"role" text PRIMARY KEY NOT NULL,
	"repo_url" text,
	"packages" text[] DEFAULT '{}'::text[] NOT NULL,
	"service_user" text,
	"env_template" text DEFAULT '' NOT NULL,
	"secrets" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"unit_templates" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "node_provisioning" ADD CONSTRAINT "node_provisioning_node_id_nodes_id_fk" FOREIGN KEY ("node_id") REFERENCES "public"."nodes"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "role_provisioning" ADD CONSTRAINT "role_provisioning_role_code_roles_name_fk" FOREIGN KEY ("role") REFERENCES "public"."code_roles"("name") ON DELETE cascade ON UPDATE cascade;