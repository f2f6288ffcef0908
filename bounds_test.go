// bounds_test.go checks that data some reader could not read back is refused on both
// faces and never stored, while a well-behaved client still connects, polls and
// receives, and a strict Go decoder reads every answer it gets.

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// hostileData are the data values a face must refuse, each with the words of its 400.
var hostileData = []struct {
	name, data, contains string
}{
	{"nested one level too deep", strings.Repeat("[", 33) + strings.Repeat("]", 33), "deeper than 32"},
	{"nested 400 levels", strings.Repeat("[", 400) + strings.Repeat("]", 400), "deeper than 32"},
	{"objects too deep", strings.Repeat(`{"a":`, 33) + "1" + strings.Repeat("}", 33), "deeper than 32"},
	{"invalid UTF-8", "\"\xff\"", "not valid UTF-8"},
	{"a number beyond float64", `1e400`, "beyond what a float64"},
	{"a negative one", `{"n":[-1e400]}`, "beyond what a float64"},
	{"a lone high surrogate", `"\ud800"`, "lone high surrogate"},
	{"a high surrogate then text", `"\ud800x\udc00"`, "lone high surrogate"},
	{"a lone low surrogate", `{"k":"\uDC00"}`, "lone low surrogate"},
	{"a high surrogate last", `"a\udbff"`, "lone high surrogate"},
}

// fineData are values every reader takes, close to the edges of hostileData.
var fineData = []string{
	strings.Repeat("[", 32) + strings.Repeat("]", 32),
	`"\ud83d\ude00 \u0000 \\ud800 [[["`, `1e-400`, `-1.7976931348623157e308`, `123456789012345678901234567890`,
}

func TestHostileDataIsRefusedOnBothFaces(t *testing.T) {
	ts := start(t, testConfig())
	sender, reader := ts.connect(t), ts.connect(t)
	c, _ := sioConnect(t, ts)
	for i, tt := range hostileData {
		t.Run(tt.name, func(t *testing.T) {
			body := `{"event":"chat","data":` + tt.data + `}`
			r, err := ts.request(context.Background(), "POST", "/emit?id="+sender, "application/json", body)
			require.NoError(t, err)
			requireError(t, r, http.StatusBadRequest, tt.contains)

			c.post(t, fmt.Sprintf(`42%d["chat",%s]`, i, tt.data)) // the session stays open
			pkts := c.get(t)
			require.Len(t, pkts, 1, pkts)
			require.Regexp(t, fmt.Sprintf(`^43%d\[\{"error":".*%s.*"\}\]$`, i, tt.contains), pkts[0])
		})
	}
	for _, data := range fineData {
		ts.emit(t, sender, "chat", json.RawMessage(data))
	}
	// Nothing hostile was stored: the reader gets its count, then exactly the fine ones.
	msgs := strictPoll(t, ts, reader, 0)
	var chats []string
	for _, m := range msgs {
		if m.Event == "chat" {
			chats = append(chats, string(m.Data))
		}
	}
	require.Equal(t, fineData, chats)
}

// strictPoll polls once and reads the answer as a strict reader would: valid UTF-8,
// and every value decoded into any, which fails on what Go cannot represent.
func strictPoll(t *testing.T, ts *testServer, id string, after uint64) []wireMessage {
	t.Helper()
	r, err := ts.request(context.Background(), "GET", fmt.Sprintf("/poll?id=%s&after=%d", id, after), "", "")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, r.status, string(r.body))
	require.True(t, utf8.Valid(r.body))
	var strict any
	require.NoError(t, json.Unmarshal(r.body, &strict))
	var body struct{ Messages []wireMessage }
	require.NoError(t, json.Unmarshal(r.body, &body))
	return body.Messages
}

// TestAWellBehavedClientIsUnhurtByHostileSenders: while both faces throw every hostile
// shape, a client that only polls keeps receiving the chat in time and reads it strictly.
func TestAWellBehavedClientIsUnhurtByHostileSenders(t *testing.T) {
	ts := start(t, testConfig())
	friend, attacker := ts.connect(t), ts.connect(t)
	c, _ := sioConnect(t, ts)
	reader := ts.connect(t)
	cursor := uint64(0)
	for i, tt := range hostileData {
		ts.request(context.Background(), "POST", "/emit?id="+attacker, "application/json", `{"event":"chat","data":`+tt.data+`}`)
		c.post(t, `42["chat",`+tt.data+`]`)
		ts.emit(t, friend, "chat", i)
		require.Eventually(t, func() bool {
			for _, m := range strictPoll(t, ts, reader, cursor) {
				cursor = m.Seq
				if m.Event == "chat" {
					require.Equal(t, fmt.Sprint(i), string(m.Data), "only the friend's message arrives")
					return true
				}
			}
			return false
		}, 5*time.Second, time.Millisecond)
	}
}
