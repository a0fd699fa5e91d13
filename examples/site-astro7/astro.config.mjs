// @ts-check
import { defineConfig } from 'astro/config';

// The preview proxy serves this site at the root of its own port, and Vite's HMR
// WebSocket shares the page port, so no server.hmr.clientPort is set here:
// setting it would break the preview behind the proxy.
export default defineConfig({});
