CREATE TABLE "credentials" (
	"id" uuid PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"key_type" text NOT NULL,
	"public_key" text NOT NULL,
	"fingerprint" text NOT NULL,
	"sealed_private_key" text NOT NULL,
	"sealed_passphrase" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "credentials_name_unique" UNIQUE("name")
);
--> statement-breakpoint
CREATE TABLE "nodes" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"name" text NOT NULL,
	"host" text NOT NULL,
	"port" integer DEFAULT 22 NOT NULL,
	"username" text DEFAULT 'root' NOT NULL,
	"credential_id" uuid NOT NULL,
	"jump_node_id" uuid,
	"kind" text DEFAULT 'server' NOT NULL,
	"roles" text[] DEFAULT '{}'::text[] NOT NULL,
	"labels" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"policy" text DEFAULT 'security' NOT NULL,
	"control_plane" boolean DEFAULT false NOT NULL,
	"host_key_fingerprint" text,
	"host_key_status" text DEFAULT 'unknown' NOT NULL,
	"presented_fingerprint" text,
	"reachable" boolean,
	"last_error" text,
	"last_check_at" timestamp with time zone,
	"last_seen_at" timestamp with time zone,
	"latency_ms" integer,
	"uname" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "nodes_name_unique" UNIQUE("name")
);
--> statement-breakpoint
ALTER TABLE "nodes" ADD CONSTRAINT "nodes_credential_id_credentials_id_fk" FOREIGN KEY ("credential_id") REFERENCES "public"."credentials"("id") ON DELETE restrict ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "nodes" ADD CONSTRAINT "nodes_jump_node_id_nodes_id_fk" FOREIGN KEY ("jump_node_id") REFERENCES "public"."nodes"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "nodes_credential_idx" ON "nodes" USING btree ("credential_id");