package localsqs

// Persistence for `worker local`: the messages sent through the front and
// not yet deleted are kept in a file, and sent again into a new emulator
// after a restart, so that a job waiting in the queue and an answer not yet
// read survive it. (kumo's own persistence is set for the whole process from
// its environment at start, before the program can choose a directory.)

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
)

// journal is the messages sent and not deleted, by MessageId, and where
// they are kept.
type journal struct {
	path string

	mu      sync.Mutex
	next    int64
	live    map[string]keptMessage // by MessageId
	handles map[string]string      // MessageId by receipt handle
	// gone are the MessageIds deleted before their send's answer was
	// noted (a long poll gets a message before its sender hears back).
	gone map[string]bool
}

// keptMessage is one message as sent: a SendMessage request body (QueueUrl
// included), and its place in the order of sends.
type keptMessage struct {
	Seq     int64           `json:"seq"`
	Request json.RawMessage `json:"request"`
}

// Persist keeps the messages sent through the front in the file at path
// from now on, after sending again those an earlier server kept there. Call
// it once the queues exist. A message is sent again with the attributes it
// was sent with (group, deduplication id, delay) and gets a new MessageId.
func (s *Server) Persist(ctx context.Context, path string) (restored int, err error) {
	j := &journal{path: path, live: map[string]keptMessage{}, handles: map[string]string{}, gone: map[string]bool{}}
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("read the kept messages: %w", err)
	}
	var kept []keptMessage
	if len(b) > 0 {
		if err := json.Unmarshal(b, &kept); err != nil {
			return 0, fmt.Errorf("read the kept messages %s: %w", path, err)
		}
	}
	sort.Slice(kept, func(a, b int) bool { return kept[a].Seq < kept[b].Seq })
	for _, m := range kept {
		id, err := s.sendRaw(ctx, "AmazonSQS.SendMessage", m.Request)
		if err != nil {
			return restored, fmt.Errorf("send a kept message again: %w", err)
		}
		var in map[string]json.RawMessage
		_ = json.Unmarshal(m.Request, &in) // it was valid when it was sent
		if group := groupOf(in); group != "" {
			s.mu.Lock()
			s.groups[id] = group
			s.mu.Unlock()
		}
		j.live[id] = keptMessage{Seq: j.next, Request: m.Request}
		j.next++
		restored++
	}
	if err := j.save(); err != nil {
		return restored, err
	}
	s.mu.Lock()
	s.journal = j
	s.mu.Unlock()
	return restored, nil
}

// sendRaw posts one SQS JSON request straight to the emulator and returns
// the MessageId it answers.
func (s *Server) sendRaw(ctx context.Context, action string, body []byte) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.emu.URL+"/", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("X-Amz-Target", action)
	req.Header.Set("Content-Type", "application/x-amz-json-1.0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s: %s", action, resp.Status, bytes.TrimSpace(out))
	}
	var r struct {
		MessageID string `json:"MessageId"`
	}
	if err := json.Unmarshal(out, &r); err != nil || r.MessageID == "" {
		return "", fmt.Errorf("%s: no MessageId in %s", action, out)
	}
	return r.MessageID, nil
}

// sent notes the messages a successful send created.
func (j *journal) sent(sent []sentMessage) {
	if len(sent) == 0 {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, m := range sent {
		if j.gone[m.id] || m.request == nil {
			continue
		}
		j.live[m.id] = keptMessage{Seq: j.next, Request: m.request}
		j.next++
	}
	j.saveLogged()
}

// received notes the receipt handle of a received message.
func (j *journal) received(handle, id string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.handles[handle] = id // its send may not be noted yet
}

// deleted forgets the messages a successful delete removed.
func (j *journal) deleted(req []byte) {
	handles := deletedHandles(req)
	if handles == nil {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, h := range handles {
		if id, ok := j.handles[h]; ok {
			if _, sent := j.live[id]; !sent {
				j.gone[id] = true
			}
			delete(j.live, id)
			delete(j.handles, h)
		}
	}
	j.saveLogged()
}

// saveLogged saves with j.mu held; a failed save is retried by the next one
// (nothing here can do better: the emulator itself keeps the message).
func (j *journal) saveLogged() {
	_ = j.saveLocked()
}

func (j *journal) save() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.saveLocked()
}

// saveLocked writes the live messages to the file: a temporary file, synced,
// then renamed over it.
func (j *journal) saveLocked() error {
	list := make([]keptMessage, 0, len(j.live))
	for _, m := range j.live {
		list = append(list, m)
	}
	sort.Slice(list, func(a, b int) bool { return list[a].Seq < list[b].Seq })
	b, err := json.Marshal(list)
	if err != nil {
		return err
	}
	dir := filepath.Dir(j.path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(j.path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("keep the messages: %w", err)
	}
	_, werr := f.Write(b)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return errors.Join(fmt.Errorf("keep the messages: %w", err), os.Remove(f.Name()))
	}
	if err := os.Rename(f.Name(), j.path); err != nil {
		return errors.Join(fmt.Errorf("keep the messages: %w", err), os.Remove(f.Name()))
	}
	return nil
}
