package fakeanthropic

// Fault is a way for the fake API to fail a request instead of answering it.
type Fault int

// The faults a Step can inject. The zero value, FaultNone, answers normally.
const (
	// FaultNone answers with the step's content.
	FaultNone Fault = iota
	// FaultBadRequest answers 400 with an invalid_request_error.
	FaultBadRequest
	// FaultOverloaded answers 529 with an overloaded_error.
	FaultOverloaded
	// FaultHang never answers: the handler blocks until the request's
	// context ends (the client gave up or went away) or the server closes.
	FaultHang
	// FaultDrop starts the stream, sends part of the step's text, then
	// aborts the connection without message_stop.
	FaultDrop
	// FaultStatus answers the step's Status with an error of ErrorType.
	FaultStatus
)

// ToolUse is one tool_use block of a scripted assistant message.
type ToolUse struct {
	// Name is the tool, e.g. "Read", "Edit", "Write" or "Bash".
	Name string
	// Input is the tool's input, marshalled to JSON (a map or a struct).
	Input any
}

// Step is one scripted answer of the fake Messages API: one assistant
// message, or a fault.
type Step struct {
	// Text, when not empty, is sent as a text block before any tool use.
	Text string
	// Tools are sent as tool_use blocks, in order.
	Tools []ToolUse
	// StopReason defaults to "tool_use" when Tools is not empty and to
	// "end_turn" otherwise.
	StopReason string
	// Fault, when not FaultNone, replaces the answer.
	Fault Fault
	// Message is the error message of FaultBadRequest, FaultOverloaded
	// and FaultStatus.
	Message string
	// Status and ErrorType are the HTTP status and error type of
	// FaultStatus.
	Status    int
	ErrorType string
}

// stopReason returns the step's stop reason with its default applied.
func (s Step) stopReason() string {
	switch {
	case s.StopReason != "":
		return s.StopReason
	case len(s.Tools) > 0:
		return "tool_use"
	default:
		return "end_turn"
	}
}

// Tool returns a step that calls one tool with the given input.
func Tool(name string, input any) Step {
	return Step{Tools: []ToolUse{{Name: name, Input: input}}}
}

// Read returns a step calling the Read tool on an absolute path.
func Read(path string) Step {
	return Tool("Read", map[string]any{"file_path": path})
}

// Edit returns a step calling the Edit tool. The CLI refuses to edit a file
// that the session has not Read first.
func Edit(path, oldString, newString string) Step {
	return Tool("Edit", map[string]any{"file_path": path, "old_string": oldString, "new_string": newString})
}

// Write returns a step calling the Write tool.
func Write(path, content string) Step {
	return Tool("Write", map[string]any{"file_path": path, "content": content})
}

// Bash returns a step calling the Bash tool with a command line.
func Bash(command string) Step {
	return Tool("Bash", map[string]any{"command": command, "description": "run a command"})
}

// Text returns a final step: a text answer that ends the turn.
func Text(text string) Step {
	return Step{Text: text}
}

// BadRequest returns a step answering 400 invalid_request_error.
func BadRequest(message string) Step {
	return Step{Fault: FaultBadRequest, Message: message}
}

// Refuse returns a step answering status with an error of errType, as the
// API (or the worker's gateway) refuses a request.
func Refuse(status int, errType, message string) Step {
	return Step{Fault: FaultStatus, Status: status, ErrorType: errType, Message: message}
}

// Overloaded returns a step answering 529 overloaded_error.
func Overloaded() Step {
	return Step{Fault: FaultOverloaded, Message: "Overloaded"}
}

// Hang returns a step that never answers.
func Hang() Step {
	return Step{Fault: FaultHang}
}

// Drop returns a step that starts streaming text and then cuts the connection.
func Drop(text string) Step {
	return Step{Fault: FaultDrop, Text: text}
}

// EditFile returns the common script: Read path, Edit it replacing oldString
// with newString, then answer finalText.
func EditFile(path, oldString, newString, finalText string) []Step {
	return []Step{Read(path), Edit(path, oldString, newString), Text(finalText)}
}
