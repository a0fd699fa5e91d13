// Package preview serves the live preview of a customer's Astro site: a
// DevServer runs and supervises `astro dev` on a loopback port, and a Proxy
// forwards the worker's public HTTP port to it, Vite's HMR WebSocket
// included, so that edits on disk show in an open browser at once.
//
// Wiring, in the worker:
//
//	ds := preview.NewDevServer(preview.DevServerConfig{Port: 4321, Home: home, Logger: log})
//	proxy := preview.NewProxy(preview.ProxyConfig{Upstream: ds.Upstream, Activity: idle, Logger: log})
//	mux.Handle("/health", health)
//	mux.Handle("/", proxy)
//	err := ds.Target(ctx, projectDir) // on init; a thread switch in the same dir needs none
//	...
//	err = ds.Close(ctx)
//
// Any middleware that wraps the http.ResponseWriter in front of the Proxy
// must implement Unwrap, or WebSocket upgrades fail.
//
// Facts about the dev server that callers meet:
//   - Editing a page's template (src/pages/*.astro) makes Vite send
//     "full-reload": the launcher's page script (devserver.mjs) updates the
//     open page in place when its scripts are all Astro's and Vite's dev
//     scripts; otherwise the browser reloads the page by itself.
//   - The dev server answers only requests carrying its secret
//     (SecretHeader), which the Proxy adds; see guard.go.
//   - Vite's file watcher (chokidar 5) drops a change to a file that comes
//     within 50 ms of the previous change to the same file.
//   - The dev server's children (esbuild) are killed with its process group;
//     where the worker is PID 1 in a container, run it under an init
//     (docker --init, ECS initProcessEnabled) so killed orphans are reaped.
package preview
