import type { z } from 'zod';
import type { ValidationIssue } from '../errors.js';

/** zod's issues as plain data, the shape every 400 body and ValidationError carries. */
export function toIssues(error: z.ZodError): ValidationIssue[] {
  return error.issues.map((i) => ({
    path: i.path.map((p) => (typeof p === 'symbol' ? String(p) : p)),
    message: i.message,
  }));
}
