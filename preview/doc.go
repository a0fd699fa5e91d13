// Package preview serves the live preview of a customer's Astro site: a
// DevServer runs and supervises `astro dev` on a loopback port, and a Proxy
// forwards the worker's public HTTP port to it, Vite's HMR WebSocket
// included, so that edits on disk show in an open browser at once.
//
// Wiring, in the worker:
//
//	ds := preview.NewDevServer(preview.DevServerConfig{Port: 4321, Home: home, Logger: log})
//	proxy := preview.NewProxy(preview.ProxyConfig{Upstream: ds.URL, Activity: idle, Logger: log})
//	mux.Handle("/health", health)
//	mux.Handle("/", proxy)
//	err := ds.Target(ctx, projectDir) // on init; a thread switch in the same dir needs none
//	...
//	err = ds.Close(ctx)
//
// Any middleware that wraps the http.ResponseWriter in front of the Proxy
// must implement Unwrap, or WebSocket upgrades fail.
package preview
