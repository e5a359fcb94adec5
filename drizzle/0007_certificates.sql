CREATE TABLE "cert_authorities" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"name" text NOT NULL,
	"cert_pem" text NOT NULL,
	"fingerprint" text NOT NULL,
	"sealed_key" text,
	"issuing" boolean DEFAULT false NOT NULL,
	"not_after" timestamp with time zone NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "cert_authorities_name_unique" UNIQUE("name"),
	CONSTRAINT "cert_authorities_fingerprint_unique" UNIQUE("fingerprint")
);
--> statement-breakpoint
CREATE TABLE "cert_roles" (
	"role" text PRIMARY KEY NOT NULL,
	"cert_path" text NOT NULL,
	"key_path" text NOT NULL,
	"endpoints" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"reload_command" text[] NOT NULL,
	"issuer" text DEFAULT 'ca' NOT NULL,
	"validity_days" integer DEFAULT 90 NOT NULL,
	"extra_sans" text[] DEFAULT '{}'::text[] NOT NULL,
	"sort_order" integer DEFAULT 100 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "certificates" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"node_id" uuid NOT NULL,
	"source" text NOT NULL,
	"location" text NOT NULL,
	"role" text,
	"servername" text,
	"pem" text,
	"fingerprint" text,
	"subject" text,
	"issuer" text,
	"sans" text[] DEFAULT '{}'::text[] NOT NULL,
	"serial" text,
	"not_before" timestamp with time zone,
	"not_after" timestamp with time zone,
	"key_type" text,
	"key_bits" integer,
	"self_signed" boolean,
	"chain_verified" boolean,
	"chain_error" text,
	"mismatch" boolean DEFAULT false NOT NULL,
	"error" text,
	"checked_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "issued_certificates" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"ca_id" uuid NOT NULL,
	"serial" text NOT NULL,
	"node_id" uuid,
	"node_name" text NOT NULL,
	"role" text,
	"subject" text NOT NULL,
	"sans" text[] NOT NULL,
	"fingerprint" text NOT NULL,
	"pem" text NOT NULL,
	"not_before" timestamp with time zone NOT NULL,
	"not_after" timestamp with time zone NOT NULL,
	"run_id" uuid,
	"revoked_at" timestamp with time zone,
	"revoke_reason" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "certificates" ADD CONSTRAINT "certificates_node_id_nodes_id_fk" FOREIGN KEY ("node_id") REFERENCES "public"."nodes"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "issued_certificates" ADD CONSTRAINT "issued_certificates_ca_id_cert_authorities_id_fk" FOREIGN KEY ("ca_id") REFERENCES "public"."cert_authorities"("id") ON DELETE restrict ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "issued_certificates" ADD CONSTRAINT "issued_certificates_node_id_nodes_id_fk" FOREIGN KEY ("node_id") REFERENCES "public"."nodes"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "certificates_node_location" ON "certificates" USING btree ("node_id","source","location");--> statement-breakpoint
CREATE INDEX "certificates_not_after_idx" ON "certificates" USING btree ("not_after");--> statement-breakpoint
CREATE UNIQUE INDEX "issued_certificates_ca_serial" ON "issued_certificates" USING btree ("ca_id","serial");