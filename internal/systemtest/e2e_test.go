package systemtest

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/testkit/browser"
	"github.com/webordinary/claude-code-astro/internal/testkit/fakeanthropic"
	"github.com/webordinary/claude-code-astro/jobs"
)

// headingInstruction is how the end-to-end test asks for an edit; the fake
// API reads the edit back out of it, so any number of users and threads can
// share one fake server.
var headingInstruction = regexp.MustCompile(`^Change the heading from "([^"]*)" to "([^"]*)" in (\S+)$`)

func headingJob(id, user, thread, page, from, to string) jobs.Job {
	return execJob(id, user, thread, fmt.Sprintf("Change the heading from %q to %q in %s", from, to, page))
}

// headingDecider answers Read, Edit, then a final text for the edit the
// request's latest prompt asks for, on the example site's <h1 id="title">.
var headingDecider = headingDeciderOf(func(text string) string { return `<h1 id="title">` + text + `</h1>` })

// headingDeciderOf is headingDecider for headings that h1 writes out.
func headingDeciderOf(h1 func(text string) string) fakeanthropic.Decider {
	return func(req *fakeanthropic.Request) fakeanthropic.Step {
		var prompt string
		for _, m := range req.Messages {
			if m.IsPrompt() {
				prompt = m.Text()
			}
		}
		var match []string
		for _, line := range strings.Split(prompt, "\n") {
			if m := headingInstruction.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
				match = m
			}
		}
		if match == nil {
			return fakeanthropic.Text("I do not understand: " + prompt)
		}
		from, to, page := match[1], match[2], match[3]
		switch req.Turn {
		case 0:
			return fakeanthropic.Read(page)
		case 1:
			return fakeanthropic.Edit(page, h1(from), h1(to))
		default:
			return fakeanthropic.Text("The heading now says " + to + ".")
		}
	}
}

// TestEndToEndTwoUsersTwoThreads runs the whole system as a user would: the
// worker binary, the emulator, the real CLI with the fake API, a real Astro
// dev server and Chromium. Two users each run three execute jobs on each of
// two threads, switching threads between jobs.
func TestEndToEndTwoUsersTwoThreads(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	hosts := h.useExampleSite(t)
	p := h.start(map[string]string{"MAX_CONCURRENT_USERS": "2"})
	h.api.SetDecider(headingDecider)

	users := map[string][]string{"ann": {"a1", "a2"}, "ben": {"b1", "b2"}}
	for _, user := range []string{"ann", "ben"} {
		for _, thread := range users[user] {
			h.send(initJob("init-"+thread, user, thread))
		}
	}
	links := map[string]string{}
	for _, thread := range []string{"a1", "a2", "b1", "b2"} {
		r := h.final("init-"+thread, 3*time.Minute)
		if r.Status != jobs.StatusSucceeded {
			t.Fatalf("init %s: %+v", thread, r.Error)
		}
		links[r.UserID] = h.checkPreviewURL(t, r, r.UserID)
	}
	p.waitPreviewReady(t, "ann")
	b := browser.Start(t, browser.MapHost(hosts))
	openPreview(t, b, links["ann"])
	b.WaitText("#title", "Welcome to Example Site", 30*time.Second)

	// Each user: thread 1, thread 2, thread 1, ... three jobs on each, sent
	// interleaved with the other user's.
	heading := map[string]string{}
	sent := map[string][]string{}
	for round := 1; round <= 3; round++ {
		for _, turn := range []int{0, 1} {
			for _, user := range []string{"ann", "ben"} {
				thread := users[user][turn]
				from := heading[thread]
				if from == "" {
					from = "Welcome to Example Site"
				}
				to := fmt.Sprintf("%s on %s, edit %d", user, thread, round)
				id := fmt.Sprintf("%s-%d", thread, round)
				h.send(headingJob(id, user, thread, h.projectDir(user)+"/src/pages/index.astro", from, to))
				heading[thread] = to
				sent[user] = append(sent[user], id)
			}
		}
	}
	for _, ids := range sent {
		for _, id := range ids {
			if r := h.final(id, 3*time.Minute); r.Status != jobs.StatusSucceeded || r.Commit == "" || r.Pushed == nil || !*r.Pushed {
				t.Fatalf("job %s: %+v %+v", id, r, r.Error)
			}
		}
	}

	// Responses: exactly one final per job, in send order per user, and
	// every progress response of a job before its final one.
	finals := map[string]int{}
	order := map[string][]string{}
	finalSeen := map[string]bool{}
	for _, r := range h.responses.All {
		if r.Status == jobs.StatusProgress {
			if finalSeen[r.JobID] {
				t.Errorf("progress for %s after its final response", r.JobID)
			}
			continue
		}
		finalSeen[r.JobID] = true
		finals[r.JobID]++
		if r.Type == jobs.TypeExecute {
			order[r.UserID] = append(order[r.UserID], r.JobID)
		}
	}
	for id, n := range finals {
		if n != 1 {
			t.Errorf("job %s has %d final responses", id, n)
		}
	}
	for user, ids := range sent {
		if strings.Join(order[user], ",") != strings.Join(ids, ",") {
			t.Errorf("%s's responses came as %v, sent as %v", user, order[user], ids)
		}
	}

	// The remote: each thread branch holds its three commits and its last heading.
	for thread, want := range heading {
		log := h.git.Run(h.remote.Dir, "log", "--format=%s", "main..thread-"+thread)
		subjects := strings.Split(strings.TrimSpace(log), "\n")
		if len(subjects) != 3 {
			t.Errorf("thread-%s has %d commits on the remote, want 3:\n%s", thread, len(subjects), log)
		}
		for _, s := range subjects {
			if !strings.HasPrefix(s, "Thread "+thread+": Change the heading") {
				t.Errorf("thread-%s commit %q", thread, s)
			}
		}
		if page := h.git.Run(h.remote.Dir, "show", "thread-"+thread+":src/pages/index.astro"); !strings.Contains(page, want) {
			t.Errorf("thread-%s's page does not say %q", thread, want)
		}
	}

	// Ann's preview shows her active thread: one more edit on her first
	// thread makes it the active one, and the open page follows.
	h.send(headingJob("a1-4", "ann", "a1", h.projectDir("ann")+"/src/pages/index.astro", heading["a1"], "ann on a1, shown live"))
	if r := h.final("a1-4", 3*time.Minute); r.Status != jobs.StatusSucceeded {
		t.Fatalf("last job: %+v", r.Error)
	}
	b.WaitText("#title", "ann on a1, shown live", 60*time.Second)
	if body := p.workerStatus(); body["userId"] != "ann" || body["threadId"] != "a1" {
		t.Errorf("worker status names %v/%v, want ann/a1", body["userId"], body["threadId"])
	}
}
