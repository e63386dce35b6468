/**
 * The console's paths and the methods each one serves, filled in as routes are registered, so that
 * another method on a known path is answered 405 with `Allow` (HTTP's contract) rather than the 404
 * of an unknown path, and the list cannot drift from the routes themselves.
 */
import type { RequestHandler } from 'express';
import { AppError } from '../errors.js';

export class RouteTable {
  private readonly routes: Array<{ pattern: RegExp; methods: Set<string> }> = [];

  /** `path` as express writes it; only `:name` segments are used by the console. */
  add(method: string, path: string): void {
    const source = path.split('/').map((segment) => (segment.startsWith(':') ? '[^/]+' : segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))).join('/');
    // Express matches case-insensitively and with an optional trailing slash; so must this.
    const pattern = new RegExp(`^${source}/?$`, 'i');
    const found = this.routes.find((r) => r.pattern.source === pattern.source);
    const methods = found?.methods ?? new Set<string>();
    methods.add(method.toUpperCase());
    if (method.toUpperCase() === 'GET') methods.add('HEAD');
    if (!found) this.routes.push({ pattern, methods });
  }

  /** The methods `path` is served with, or null for a path the console does not have. */
  allowed(path: string): string[] | null {
    const methods = new Set<string>();
    for (const route of this.routes) if (route.pattern.test(path)) for (const m of route.methods) methods.add(m);
    return methods.size ? [...methods].sort() : null;
  }

  /**
   * Mount before sign-in and CSRF checks: a method the path never serves is refused the same for
   * everyone, instead of as a 401 or 403 that would suggest signing in could help.
   */
  methodNotAllowed(): RequestHandler {
    return (req, res, next) => {
      const methods = this.allowed(req.path);
      if (!methods || methods.includes(req.method)) return next();
      res.set('Allow', methods.join(', '));
      next(new AppError('METHOD_NOT_ALLOWED'));
    };
  }
}
