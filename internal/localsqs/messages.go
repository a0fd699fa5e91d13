package localsqs

import "encoding/json"

// The parts of SQS's JSON requests and answers that the front reads: what
// a send created, and what a delete removes. The group cache (localsqs.go)
// and the journal (persist.go) both read them here.

// sentMessage is one message that a successful SendMessage or
// SendMessageBatch created.
type sentMessage struct {
	// id is its MessageId.
	id string
	// group is its MessageGroupId; "" on a standard queue.
	group string
	// request is the SendMessage request body that sends it again: the
	// request itself, or a batch entry without its Id and with the batch's
	// QueueUrl.
	request json.RawMessage
}

// parseSent returns the messages that a send created, from its request and
// its successful answer: the one message of a SendMessage, or each entry of
// a SendMessageBatch that the answer lists as successful, in the request's
// order. It returns nil when either body is not a JSON object.
func parseSent(req, resp []byte) []sentMessage {
	var in map[string]json.RawMessage
	var out struct {
		MessageID  string `json:"MessageId"`
		Successful []struct {
			ID        string `json:"Id"`
			MessageID string `json:"MessageId"`
		}
	}
	if json.Unmarshal(req, &in) != nil || json.Unmarshal(resp, &out) != nil {
		return nil
	}
	var sent []sentMessage
	if out.MessageID != "" {
		sent = append(sent, sentMessage{id: out.MessageID, group: groupOf(in), request: req})
	}
	var entries []map[string]json.RawMessage
	_ = json.Unmarshal(in["Entries"], &entries) // none: not a batch
	for _, e := range entries {
		var id string
		_ = json.Unmarshal(e["Id"], &id) // none: matches no answer
		for _, ok := range out.Successful {
			if ok.ID != id {
				continue
			}
			m := sentMessage{id: ok.MessageID, group: groupOf(e)}
			delete(e, "Id")
			e["QueueUrl"] = in["QueueUrl"]
			m.request, _ = json.Marshal(e) // raw values that parsed: it cannot fail
			sent = append(sent, m)
		}
	}
	return sent
}

// groupOf returns the MessageGroupId of a SendMessage request or a batch
// entry, "" when it has none (a standard queue's).
func groupOf(fields map[string]json.RawMessage) string {
	var group string
	_ = json.Unmarshal(fields["MessageGroupId"], &group) // absent: none
	return group
}

// deletedHandles returns the receipt handles of a DeleteMessage or
// DeleteMessageBatch request, nil when it is not a JSON object.
func deletedHandles(req []byte) []string {
	var in struct {
		ReceiptHandle string `json:"ReceiptHandle"`
		Entries       []struct {
			ReceiptHandle string `json:"ReceiptHandle"`
		}
	}
	if json.Unmarshal(req, &in) != nil {
		return nil
	}
	handles := []string{in.ReceiptHandle}
	for _, e := range in.Entries {
		handles = append(handles, e.ReceiptHandle)
	}
	return handles
}
