// The worker's launcher of a site's Astro dev server. The worker writes this
// file (embedded in its binary) into a root-owned directory that everyone may
// read, and runs `node <this file>` in the site's directory, as the site's
// tenant, with the environment variables below. Nothing here comes from the
// site: it runs before the site's own config is loaded, and starts Astro
// through its programmatic API with an inline config that Astro merges with
// the site's own.
//
// - A dev server answers only the worker's proxy: every HTTP request and
//   every upgrade (Vite's HMR WebSocket) must carry the header SECRET_HEADER
//   with the secret from WEBORDINARY_DEV_SECRET, or it gets 403. The check
//   wraps the emit of every HTTP(S) server this process creates, so no
//   middleware or upgrade listener of Vite, Astro or the site sees a request
//   without it. The secret is taken out of process.env before Astro starts.
// - The Claude Code CLI writes a file through a temporary file beside it
//   (`index.astro.tmp.<pid>.<hex>`) that it renames over the original: the
//   dev server's watcher ignores those, or Astro takes the temporary file in
//   src/pages for a new route (a full reload, and an ENOENT error page when
//   it is gone before Astro reads it).
// - An edit of a page's text updates the open page in place: Astro answers
//   such an edit (the page is a server-rendered module) with a full reload,
//   which loses the page's state and scroll position. A script the launcher
//   adds to every page (dev only) catches Vite's reload, fetches the page
//   again and swaps its head and body in place, keeping window, scroll and
//   Vite's own style elements. It does so only on pages whose scripts are
//   all Astro's and Vite's dev scripts, unchanged: a page with scripts of
//   its own (which a swapped body would lose the listeners of), a failed
//   fetch, or a page that is not HTML reloads as before.
// - strictPort: a port taken by someone else fails the start (the worker
//   picks another) rather than Vite moving to a port nobody checked.

import http from 'node:http';
import https from 'node:https';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { timingSafeEqual } from 'node:crypto';

const SECRET_HEADER = 'x-webordinary-dev-secret';

const secret = process.env.WEBORDINARY_DEV_SECRET ?? '';
const port = Number(process.env.WEBORDINARY_DEV_PORT);
delete process.env.WEBORDINARY_DEV_SECRET;
delete process.env.WEBORDINARY_DEV_PORT;
if (secret.length < 32 || !Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('webordinary dev server launcher: WEBORDINARY_DEV_SECRET and WEBORDINARY_DEV_PORT are required');
  process.exit(2);
}
const want = Buffer.from(secret);

// The Claude Code CLI's temporary files: `${file}.tmp.${pid}.${hex}` (its
// atomic write of Edit and Write) and `${file}.tmp.${hex}` (its other
// writes), in 2.1.218 and 2.1.332 alike.
const cliTempFile = /\.tmp\.(?:\d+\.)?[0-9a-f]{8,}$/;

function allowed(req) {
  const got = req.headers[SECRET_HEADER];
  if (typeof got !== 'string') return false;
  const b = Buffer.from(got);
  return b.length === want.length && timingSafeEqual(b, want);
}

function guard(proto) {
  const emit = proto.emit;
  proto.emit = function guardedEmit(event, req, resOrSocket, ...rest) {
    switch (event) {
      case 'request':
      case 'checkContinue':
      case 'checkExpectation':
        if (!allowed(req)) {
          resOrSocket.writeHead(403, { 'Content-Type': 'text/plain', Connection: 'close' });
          resOrSocket.end('Forbidden\n');
          return true;
        }
        delete req.headers[SECRET_HEADER];
        break;
      case 'upgrade':
      case 'connect':
        if (!allowed(req)) {
          resOrSocket.end('HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
          return true;
        }
        delete req.headers[SECRET_HEADER];
        break;
    }
    return emit.call(this, event, req, resOrSocket, ...rest);
  };
}
guard(http.Server.prototype);
guard(https.Server.prototype);

// The page script of the in-place update (see above). Vite's client awaits
// its vite:beforeFullReload listeners and reloads only when the payload
// names no .html page or the current one: the listener points the payload
// at a page that is never open, and updates the page itself (or reloads).
const PAGE_SCRIPT = `
if (import.meta.hot && !globalThis.__webordinaryInPlace) {
  globalThis.__webordinaryInPlace = true;
  const devScript = (s) => {
    const src = s.getAttribute('src');
    if (src === null) return (s.textContent || '').trimStart().startsWith('window.__astro_dev_toolbar__');
    const u = new URL(src, location.href);
    return u.pathname === '/@vite/client' || u.pathname.endsWith('/dev-toolbar/entrypoint.js') ||
      u.pathname === '/@id/astro:scripts/page.js' || u.searchParams.get('type') === 'style';
  };
  const scriptsOf = (doc) => {
    const all = Array.from(doc.querySelectorAll('script'));
    if (!all.every(devScript)) return null;
    return all.map((s) => s.getAttribute('src') || s.textContent).join('\\n');
  };
  let scripts = scriptsOf(document);
  const headKey = (el) => el.matches('style[data-vite-dev-id]') ? 'vite ' + el.getAttribute('data-vite-dev-id') : el.outerHTML;
  const kept = (n) => n.nodeType === 1 && (n.localName === 'astro-dev-toolbar' || n.localName === 'vite-error-overlay');
  const update = async () => {
    const res = await fetch(location.href, { headers: { Accept: 'text/html' }, cache: 'no-store', credentials: 'same-origin' });
    if (!res.ok || !(res.headers.get('Content-Type') || '').startsWith('text/html')) return false;
    const doc = new DOMParser().parseFromString(await res.text(), 'text/html');
    const next = scriptsOf(doc);
    if (next === null || next !== scripts) return false;
    const old = new Map();
    for (const el of Array.from(document.head.children)) if (el.localName !== 'script') old.set(headKey(el), el);
    const seen = new Set();
    for (const el of Array.from(doc.head.children)) {
      if (el.localName === 'script') continue;
      const k = headKey(el);
      seen.add(k);
      if (!old.has(k)) document.head.appendChild(document.importNode(el, true));
    }
    for (const [k, el] of old) if (!seen.has(k)) el.remove();
    for (const n of Array.from(document.body.childNodes)) if (!kept(n)) n.remove();
    const anchor = document.body.firstChild;
    for (const n of Array.from(doc.body.childNodes)) if (!kept(n)) document.body.insertBefore(document.importNode(n, true), anchor);
    for (const a of Array.from(document.body.attributes)) document.body.removeAttribute(a.name);
    for (const a of Array.from(doc.body.attributes)) document.body.setAttribute(a.name, a.value);
    document.title = doc.title;
    return true;
  };
  let queue = Promise.resolve();
  import.meta.hot.on('vite:beforeFullReload', (payload) => {
    if (scripts === null || (payload.path && payload.path !== '*')) return;
    payload.path = '/__webordinary_in_place__.html';
    queue = queue.then(update).then((done) => {
      if (done) console.debug('[webordinary] page updated in place');
      else location.reload();
    }, () => location.reload());
  });
}
`;

const inPlace = {
  name: 'webordinary:in-place-update',
  hooks: {
    'astro:config:setup': ({ command, injectScript }) => {
      if (command === 'dev') injectScript('page', PAGE_SCRIPT);
    },
  },
};

// Astro as the site installed it.
const root = process.cwd();
const require = createRequire(path.join(root, 'package.json'));
let pkgPath;
try {
  pkgPath = require.resolve('astro/package.json');
} catch (e) {
  console.error(`webordinary dev server launcher: astro is not installed in ${root}: ${e.message}`);
  process.exit(3); // the worker's sign for "not installed"
}
const pkg = JSON.parse(readFileSync(pkgPath, 'utf8'));
let entry = pkg.exports?.['.'] ?? pkg.main ?? './dist/index.js';
if (typeof entry !== 'string') entry = entry.import ?? entry.default;
const { dev } = await import(pathToFileURL(path.join(path.dirname(pkgPath), entry)).href);

await dev({
  root,
  // What `astro dev --host 127.0.0.1 --port N` sets.
  server: { host: '127.0.0.1', port, allowedHosts: [] },
  integrations: [inPlace],
  vite: {
    server: {
      strictPort: true,
      watch: { ignored: [(file) => cliTempFile.test(file)] },
    },
  },
});
