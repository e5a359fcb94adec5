import { z } from 'zod';
import { uuidSchema, wrongType } from './common';
import { nodeNameSchema } from './nodes';

/** `POST /api/ssh-keys/rotate` (docs/ssh-key-rotation.md). */
export const rotateKeysSchema = z
	.object({
		/** The credential to rotate; when absent, the one credential the nodes in scope share. */
		credential_id: uuidSchema.optional(),
		nodes: z
			.array(z.union([uuidSchema, nodeNameSchema]), { error: 'must be a list of node ids or names' })
			.min(1, 'must name at least one node, or be left out for every node of the credential')
			.max(10_000)
			.optional(),
		remove_safety_net: z.boolean(wrongType('must be true or false')).default(false),
		dry_run: z.boolean(wrongType('must be true or false')).default(false)
	})
	.strict();

export type RotateKeysInput = z.infer<typeof rotateKeysSchema>;
