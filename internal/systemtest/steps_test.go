package systemtest

import "github.com/webordinary/claude-code-astro/internal/testkit/fakeanthropic"

type fakeStep = fakeanthropic.Step

// editHeading is the common script: read the page, edit its heading, say so.
func editHeading(page string) []fakeStep {
	return fakeanthropic.EditFile(page, "<h1>Hello</h1>", "<h1>Hello, edited</h1>", "I changed the heading.")
}
