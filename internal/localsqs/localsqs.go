// Package localsqs runs the in-process AWS emulator (kumo) on loopback for
// `worker local` and the tests, with two fixes on top.
//
// First, kumo returns neither MessageGroupId nor SequenceNumber among a
// received message's attributes, as SQS does on a FIFO queue; the front
// remembers each sent message's group and adds both.
//
// Second, kumo wakes a waiting long
// poll only when a message is sent, not when a message becomes receivable
// again (a FIFO group unlocked by a delete, a message released with a
// visibility change). Real SQS answers such a poll at once; on bare kumo the
// worker would wait out its 20 s poll between one user's jobs. After every
// delete or visibility change the front sends a "nudge": a message delayed
// 15 minutes (the SQS maximum), whose send wakes the pollers; when it comes
// due the front deletes it from the receive that returns it, so no client
// ever sees one.
//
// kumo keeps its state in one store per process, shared by every Server.
package localsqs

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/sivchari/kumo"
)

// nudgeDelay keeps a nudge invisible for the longest delay SQS allows.
const nudgeDelay = 900

// Server is a running emulator behind the front. Close stops it.
type Server struct {
	// URL is the endpoint to give the AWS SDK (BaseEndpoint).
	URL string

	emu    *kumo.Server
	srv    *http.Server
	direct *sqs.Client
	seq    atomic.Int64
	wg     sync.WaitGroup

	mu      sync.Mutex
	groups  map[string]string // MessageGroupId by MessageId, of FIFO messages not yet deleted
	held    map[string]string // MessageId by receipt handle, to forget a deleted message's group
	learned chan struct{}     // closed and replaced whenever groups grows
	journal *journal          // the messages kept across restarts; nil unless Persist
}

// kept returns the journal, nil when messages are not kept.
func (s *Server) kept() *journal {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.journal
}

// groupWait bounds how long a receive waits for the send of one of its FIFO
// messages to be noted: the message is receivable as soon as kumo stored it,
// a moment before its send's answer (which carries its id) passes the front.
const groupWait = 2 * time.Second

// Start runs the emulator with its front on addr ("127.0.0.1:0" for any port).
func Start(addr string) (*Server, error) {
	emu := kumo.NewServer()
	target, err := url.Parse(emu.URL)
	if err != nil {
		emu.Close()
		return nil, fmt.Errorf("emulator URL: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		emu.Close()
		return nil, err
	}
	s := &Server{URL: "http://" + ln.Addr().String(), emu: emu, groups: map[string]string{}, held: map[string]string{}, learned: make(chan struct{})}
	s.direct = sqs.NewFromConfig(aws.Config{Region: "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("local", "local", "")},
		func(o *sqs.Options) { o.BaseEndpoint = aws.String(emu.URL) })
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, _ error) {
		w.WriteHeader(http.StatusBadGateway) // a client gave up: a long poll cancelled at shutdown
	}
	proxy.ModifyResponse = s.fixReceive
	s.srv = &http.Server{Handler: s.handler(proxy), ReadHeaderTimeout: 10 * time.Second}
	s.wg.Go(func() { _ = s.srv.Serve(ln) }) // ends with Close
	return s, nil
}

// Close stops the front and the emulator.
func (s *Server) Close() {
	_ = s.srv.Close() // nothing to do about a close error at the end
	s.wg.Wait()
	s.emu.Close()
}

// handler proxies every request and nudges after those that can make a
// message receivable again.
func (s *Server) handler(proxy *httputil.ReverseProxy) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		action := r.Header.Get("X-Amz-Target")
		if !unlocks(action) && action != "AmazonSQS.ReceiveMessage" && !sends(action) {
			proxy.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		if action == "AmazonSQS.ReceiveMessage" {
			var in struct {
				QueueURL string `json:"QueueUrl"`
			}
			_ = json.Unmarshal(body, &in)
			r.Header.Set(queueHeader, in.QueueURL) // for fixReceive
			proxy.ServeHTTP(w, r)
			return
		}
		if sends(action) {
			rec := &bodyRecorder{ResponseWriter: w, status: http.StatusOK}
			proxy.ServeHTTP(rec, r)
			if rec.status == http.StatusOK {
				sent := parseSent(body, rec.body.Bytes())
				s.rememberGroups(sent)
				if j := s.kept(); j != nil {
					j.sent(sent)
				}
			}
			return
		}
		s.forgetDeleted(action, body)
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		proxy.ServeHTTP(rec, r)
		if j := s.kept(); j != nil && rec.status == http.StatusOK &&
			(action == "AmazonSQS.DeleteMessage" || action == "AmazonSQS.DeleteMessageBatch") {
			j.deleted(body)
		}
		var in struct {
			QueueURL string `json:"QueueUrl"`
		}
		if rec.status == http.StatusOK && json.Unmarshal(body, &in) == nil && in.QueueURL != "" {
			s.nudge(r.Context(), in.QueueURL)
		}
	})
}

// queueHeader carries a receive's queue URL from the request to dropNudges.
const queueHeader = "X-Localsqs-Queue"

// nudgeBody marks a nudge message.
const nudgeBody = `{"localsqs":"nudge"}`

// sends reports whether an SQS action sends messages.
func sends(action string) bool {
	return action == "AmazonSQS.SendMessage" || action == "AmazonSQS.SendMessageBatch"
}

// rememberGroups notes the group of every FIFO message a send created.
func (s *Server) rememberGroups(sent []sentMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	learned := false
	for _, m := range sent {
		if m.group != "" {
			s.groups[m.id] = m.group
			learned = true
		}
	}
	if learned {
		close(s.learned)
		s.learned = make(chan struct{})
	}
}

// forgetDeleted drops the groups of the messages a delete removes.
func (s *Server) forgetDeleted(action string, req []byte) {
	if action != "AmazonSQS.DeleteMessage" && action != "AmazonSQS.DeleteMessageBatch" {
		return
	}
	handles := deletedHandles(req)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range handles {
		if id, ok := s.held[h]; ok {
			delete(s.groups, id)
			delete(s.held, h)
		}
	}
}

// fixReceive completes a ReceiveMessage answer as SQS gives it: each FIFO
// message's MessageGroupId and SequenceNumber among its attributes. It also
// removes due nudges from the answer and deletes them.
func (s *Server) fixReceive(resp *http.Response) error {
	if resp.Request.Header.Get("X-Amz-Target") != "AmazonSQS.ReceiveMessage" || resp.StatusCode != http.StatusOK {
		return nil
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return err
	}
	var out map[string]json.RawMessage
	var msgs []map[string]json.RawMessage
	queueURL := resp.Request.Header.Get(queueHeader)
	if json.Unmarshal(body, &out) != nil || json.Unmarshal(out["Messages"], &msgs) != nil || queueURL == "" {
		resp.Body = io.NopCloser(bytes.NewReader(body))
		return nil
	}
	kept := msgs[:0]
	for _, m := range msgs {
		var text, handle, id, seq string
		_ = json.Unmarshal(m["Body"], &text)
		_ = json.Unmarshal(m["ReceiptHandle"], &handle)
		_ = json.Unmarshal(m["MessageId"], &id)
		_ = json.Unmarshal(m["SequenceNumber"], &seq)
		if text != nudgeBody {
			if j := s.kept(); j != nil {
				j.received(handle, id)
			}
			s.addAttributes(resp.Request.Context(), m, id, handle, seq)
			kept = append(kept, m)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _ = s.direct.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(queueURL), ReceiptHandle: aws.String(handle)})
		cancel()
	}
	out["Messages"], _ = json.Marshal(kept)
	body, err = json.Marshal(out)
	if err != nil {
		return err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Set("Content-Length", strconv.Itoa(len(body)))
	resp.Header.Del("X-Amz-Crc32")
	return nil
}

// addAttributes sets a received FIFO message's MessageGroupId and
// SequenceNumber attributes (a FIFO message is one with a sequence number).
func (s *Server) addAttributes(ctx context.Context, m map[string]json.RawMessage, id, handle, seq string) {
	if seq == "" {
		return
	}
	timeout := time.NewTimer(groupWait)
	defer timeout.Stop()
	var group string
	for {
		s.mu.Lock()
		g, ok := s.groups[id]
		learned := s.learned
		if ok {
			s.held[handle] = id
		}
		s.mu.Unlock()
		if ok {
			group = g
			break
		}
		select {
		case <-learned:
			continue
		case <-timeout.C:
		case <-ctx.Done():
		}
		return // sent past the front: its group is unknown
	}
	attrs := map[string]string{}
	_ = json.Unmarshal(m["Attributes"], &attrs) // absent: start empty
	attrs["MessageGroupId"] = group
	if seq != "" {
		attrs["SequenceNumber"] = seq
	}
	m["Attributes"], _ = json.Marshal(attrs)
}

// unlocks reports whether an SQS action can make a message receivable.
func unlocks(action string) bool {
	switch action {
	case "AmazonSQS.DeleteMessage", "AmazonSQS.DeleteMessageBatch",
		"AmazonSQS.ChangeMessageVisibility", "AmazonSQS.ChangeMessageVisibilityBatch":
		return true
	}
	return false
}

// nudge wakes the long polls of queueURL: it sends a delayed message and
// deletes it at once (its send is what wakes them).
func (s *Server) nudge(ctx context.Context, queueURL string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	in := &sqs.SendMessageInput{QueueUrl: aws.String(queueURL), MessageBody: aws.String(nudgeBody), DelaySeconds: nudgeDelay}
	if strings.HasSuffix(queueURL, ".fifo") {
		id := "localsqs-nudge-" + strconv.FormatInt(s.seq.Add(1), 10)
		in.MessageGroupId, in.MessageDeduplicationId = aws.String("localsqs-nudge"), aws.String(id)
	}
	_, _ = s.direct.SendMessage(ctx, in) // best effort: without it a poll just waits longer
}

// bodyRecorder keeps a copy of the response body written through it.
type bodyRecorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (b *bodyRecorder) WriteHeader(code int) {
	b.status = code
	b.ResponseWriter.WriteHeader(code)
}

func (b *bodyRecorder) Write(p []byte) (int, error) {
	b.body.Write(p)
	return b.ResponseWriter.Write(p)
}

// statusRecorder remembers the status code written through it.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// Flush passes flushes on.
func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap gives http.ResponseController the writer underneath.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
