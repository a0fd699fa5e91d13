// Package preview serves the live previews of customers' Astro sites: each
// user's `astro dev`, run as their tenant on a loopback port of its own,
// reached through one public HTTP port (or one host per preview), Vite's
// HMR WebSocket included, so that edits on disk show in an open browser at
// once.
//
// The parts, in the order a request meets them on a worker:
//
//   - Gate lets through only requests that carry a valid preview token
//     (Tokens, signed with the workers' key) in the query, as a previewUrl
//     does, or in the host-scoped cookie the first such request is given;
//     it names the request's preview (PreviewID) for what follows. With
//     PerHost the first label of the host names the preview, and a token
//     opens that preview only.
//   - Sockets, between the Gate and the Proxy, records each preview's open
//     WebSockets, so that a worker that lost a preview's lease closes them
//     with 1012 and the pages reload from the preview's new worker.
//   - Proxy forwards each request to the dev server of its preview, adding
//     the dev server's secret, and answers a "starting" page that retries
//     by itself while that dev server is not ready. A page load of a
//     preview whose dev server does not run starts it (Servers.Ensure).
//   - Servers runs one dev server per active user: started by a job
//     (Target) or by a page load (Ensure, with Lookup finding the user's
//     project), each on the first free port from BasePort, stopped when
//     nobody viewed it for IdleAfter or when more than MaxServers run. Each
//     dev server is supervised: restarted with backoff when it dies, its
//     whole process group killed when it stops.
//
// Wiring, in the worker (cmd/worker):
//
//	servers := preview.NewServers(preview.ServersConfig{BasePort: 4321, Lookup: lookup, Logger: log})
//	go servers.Run(ctx) // the idle stop
//	proxy := preview.NewProxy(preview.ProxyConfig{Servers: servers, Activity: idle, Logger: log})
//	mux.Handle("/health", health)
//	mux.Handle("/", preview.NewGate(preview.GateConfig{Tokens: tokens, Next: sockets.Wrap(proxy)}))
//	err := servers.Target(ctx, preview.Target{ID: preview.ID(client, user), Key: key, Dir: dir, As: as}) // on a job
//	...
//	err = servers.Close(ctx)
//
// In a fleet, Router (`worker router`) is in front of the workers: it checks
// the token with its own Gate, reads which worker holds the preview's lease
// (Leases), and proxies the request there, where the worker's Gate checks it
// again; a page load of a preview nobody serves wakes it (Wake) and gets the
// "starting" page.
//
// Any middleware that wraps the http.ResponseWriter in front of the Proxy
// must implement Unwrap, or WebSocket upgrades fail.
//
// The launcher. A dev server is `node devserver.mjs` (the launcher, embedded
// in the worker and written to a root-owned directory), run in the project
// directory as the tenant, with an allowlisted environment (PATH, HOME, the
// dev server's secret and port, never the worker's own). It starts Astro
// through its programmatic API with strictPort, so a port another process
// took fails the start (the dev server moves to another port) instead of
// Vite moving to one nobody checked.
//
// Facts about the dev server that callers meet:
//   - Editing a page's template (src/pages/*.astro) makes Vite send
//     "full-reload": the launcher's page script updates the open page in
//     place when its scripts are all Astro's and Vite's dev scripts;
//     otherwise the browser reloads the page by itself.
//   - The dev server answers only requests carrying its secret
//     (SecretHeader), which the Proxy adds, and the Proxy forwards only over
//     a connection whose server side belongs to the dev server's uid; see
//     guard.go.
//   - Vite's file watcher (chokidar 5) drops a change to a file that comes
//     within 50 ms of the previous change to the same file.
//   - The dev server's children (esbuild) are killed with its process group;
//     where the worker is PID 1 in a container, run it under an init
//     (docker --init, ECS initProcessEnabled) so killed orphans are reaped.
//
// Files: servers.go (Servers), devserver.go (one supervised dev server and
// its states), process.go (starting and stopping one dev server process),
// ready.go (the readiness probe), ports.go, output.go (the dev server's
// output, logged line by line), launcher.go (the launcher and its
// environment), guard.go (the secret and the listener-owner check),
// proxy.go, gate.go, token.go, sockets.go, views.go, router.go, id.go.
package preview
