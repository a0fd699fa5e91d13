package sqstest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// frontPoll is how often a PausableFront asks the emulator for messages
// while it holds a worker's long poll.
const frontPoll = 50 * time.Millisecond

// PausableFront is the emulator as one worker sees it, through a switch:
// while paused, that worker's receives find nothing, so a message sent
// meanwhile goes to another worker on the same queue. The front holds each
// long poll itself and asks the emulator without waiting, every 50 ms, so
// no long poll of a paused worker is left waiting in the emulator to take
// a message. Every other request passes through. Give its URL to the
// worker as AWS_ENDPOINT_URL.
type PausableFront struct {
	URL      string
	target   *url.URL
	client   *http.Client
	paused   atomic.Bool
	forwards sync.RWMutex // held (read) by each receive passed on
}

// NewPausableFront serves a front of the emulator at target on loopback
// until the test ends.
func NewPausableFront(tb testing.TB, target string) *PausableFront {
	tb.Helper()
	u, err := url.Parse(target)
	if err != nil {
		tb.Fatal(err)
	}
	f := &PausableFront{target: u, client: &http.Client{Timeout: 10 * time.Second}}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Amz-Target") != "AmazonSQS.ReceiveMessage" {
			rp.ServeHTTP(w, r)
			return
		}
		f.receive(w, r)
	}))
	tb.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

// receive serves a long poll: the emulator is asked without waiting until
// it has messages or the poll's wait is over; never while paused.
func (f *PausableFront) receive(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var in map[string]any
	if err := json.Unmarshal(body, &in); err != nil {
		http.Error(w, "not a JSON receive", http.StatusBadRequest)
		return
	}
	wait, _ := in["WaitTimeSeconds"].(float64)
	in["WaitTimeSeconds"] = 0
	now, err := json.Marshal(in)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	deadline := time.Now().Add(time.Duration(wait * float64(time.Second)))
	for {
		if done := f.forward(w, r, now); done {
			return
		}
		if time.Now().After(deadline) {
			w.Header().Set("Content-Type", "application/x-amz-json-1.0")
			_, _ = io.WriteString(w, "{}")
			return
		}
		select {
		case <-time.After(frontPoll):
		case <-r.Context().Done():
			return
		}
	}
}

// forward asks the emulator once, unless paused, and answers w when it
// has messages or fails; done reports that w was answered.
func (f *PausableFront) forward(w http.ResponseWriter, r *http.Request, body []byte) (done bool) {
	f.forwards.RLock()
	defer f.forwards.RUnlock()
	if f.paused.Load() {
		return false
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, f.target.JoinPath(r.URL.Path).String(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return true
	}
	for k, v := range r.Header {
		req.Header[k] = v
	}
	req.Header.Del("Content-Length")
	resp, err := f.client.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return true
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return true
	}
	var got struct{ Messages []json.RawMessage }
	if resp.StatusCode == http.StatusOK && json.Unmarshal(out, &got) == nil && len(got.Messages) == 0 {
		return false
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(out)
	return true
}

// Pause stops the worker behind the front from receiving. When it returns
// no receive of that worker is under way: what is sent now goes elsewhere.
func (f *PausableFront) Pause() {
	f.paused.Store(true)
	f.forwards.Lock() // wait for a receive passed on just before
	f.forwards.Unlock()
}

// Resume lets the worker receive again.
func (f *PausableFront) Resume() { f.paused.Store(false) }
