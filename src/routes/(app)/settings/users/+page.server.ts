import { z } from 'zod';
import { createUserSchema, resetPasswordSchema } from '$lib/schemas/auth';
import { checkbox, roleSchema, uuidSchema } from '$lib/schemas/common';
import { createUser, listUsers, resetPassword, updateUser } from '$lib/server/auth/users';
import { actorOf } from '$lib/server/audit';
import { formError, parseForm } from '$lib/server/http/forms';
import type { Actions, PageServerLoad } from './$types';

export const load: PageServerLoad = async () => ({ users: await listUsers() });

// A row's form posts the user's id beside the fields PATCH /api/users/{id} takes; an unchecked box is absent.
const updateForm = z.object({ id: uuidSchema, role: roleSchema, disabled: checkbox });
const resetForm = z.object({ id: uuidSchema }).and(resetPasswordSchema);

export const actions: Actions = {
	create: async (event) => {
		const parsed = await parseForm(event.request, createUserSchema);
		if (!parsed.ok) return parsed.failure;
		try {
			const user = await createUser(actorOf(event), parsed.data);
			return { notice: `Created ${user.username} (${user.role}).` };
		} catch (err) {
			return formError(err, parsed.form);
		}
	},

	update: async (event) => {
		const parsed = await parseForm(event.request, updateForm);
		if (!parsed.ok) return parsed.failure;
		const { id, ...changes } = parsed.data;
		try {
			const user = await updateUser(actorOf(event), id, changes);
			return { notice: `Saved ${user.username}.` };
		} catch (err) {
			return formError(err, parsed.form);
		}
	},

	resetPassword: async (event) => {
		const parsed = await parseForm(event.request, resetForm);
		if (!parsed.ok) return parsed.failure;
		try {
			await resetPassword(actorOf(event), parsed.data.id, parsed.data.password);
			return { notice: 'Password reset; that user was signed out everywhere.' };
		} catch (err) {
			return formError(err, parsed.form);
		}
	}
};
