// The web console's static files (built from ui/ by `npm run build` into dist/ui/), served under /ui/.
// The console talks only to the public API, so this module has nothing to do but serve files with a
// Content-Security-Policy strict enough that an injected key or value can never run as script.

import path from 'node:path';
import express from 'express';

/** Where `npm run build` puts the console: dist/ui beside dist/src (this file is dist/src/console.js). */
export const CONSOLE_DIR = path.join(__dirname, '..', '..', '..', 'ui');

/** Scripts, styles and connections from the gateway's own origin only: no inline script or style, no
 *  eval, no plugins, no framing; images only for the data: icons the stylesheet may use. */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

export function consoleRoutes(dir = CONSOLE_DIR): express.Router {
  const router = express.Router({ strict: true });
  // Relative URLs in the page (console.js, ../v1/) need the trailing slash.
  router.get('/', (req, res, next) => (req.originalUrl.split('?')[0].endsWith('/') ? next() : res.redirect(301, `${req.baseUrl}/`)));
  router.use(
    express.static(dir, {
      index: 'index.html',
      redirect: false,
      // The files keep their names from build to build: revalidate each time rather than cache stale code.
      cacheControl: false,
      setHeaders(res) {
        res.setHeader('Content-Security-Policy', CONSOLE_CSP);
        res.setHeader('Cache-Control', 'no-cache');
        res.setHeader('X-Content-Type-Options', 'nosniff');
        res.setHeader('Referrer-Policy', 'no-referrer');
      },
    }),
  );
  return router;
}
