// chat.js owns the chat page's behaviour: it turns the socket's events into
// lines on the screen and the form into "chat" events. It knows nothing about
// HTTP; all of that lives in client.js (and the wire panel, in wire.js).
import { connect } from "./client.js";
import { showWire } from "./wire.js";
import { chatLine, countText, cut } from "./shown.js";

const $ = (id) => document.getElementById(id);
const keep = 300; // messages kept in the list; older ones are dropped
const socket = connect();

// A random default name, so two fresh tabs are told apart at a glance.
$("name").value = "guest-" + Math.floor(Math.random() * 1000);

socket.onStatus((s) => {
  $("status").textContent = s;
  $("status").dataset.state = s; // the CSS colours the badge by state
});

socket.on("online", (n) => {
  $("online").textContent = countText(n);
});

// lostAt is when the connection was lost, not when it came back: what
// was sent in between may be missing.
socket.onMissed((lostAt) => {
  const time = lostAt.toLocaleTimeString();
  showNotice(`Connection was lost at ${time}; messages sent meanwhile may be missing.`);
});

// Every line is built with textContent, never innerHTML: a message is text
// from a stranger, and the browser must show it, not run it. dir="auto"
// isolates the name and the text from each other and from the page, so a
// right-to-left name cannot run into its message, nor a U+202E in a name
// reverse the text after it. What of a message is shown, and what is
// skipped, is shown.js's rule: only strings, cut to the form's lengths.
socket.on("chat", (msg) => {
  const shown = chatLine(msg);
  if (!shown) return;
  const li = document.createElement("li");
  const name = document.createElement("b");
  name.dir = "auto";
  name.textContent = shown.name;
  const text = document.createElement("span");
  text.dir = "auto";
  text.textContent = shown.text;
  li.append(name, text);
  const list = $("messages");
  // Follow the conversation only if the reader was already at the bottom.
  const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
  list.append(li);
  while (list.children.length > keep) list.firstElementChild.remove();
  if (atBottom) list.scrollTop = list.scrollHeight;
});

$("compose").addEventListener("submit", async (e) => {
  e.preventDefault();
  const box = $("text");
  const text = box.value.trim();
  if (!text) return;
  // Clear at once so the next message can be typed while this one travels;
  // it shows up in the list when it comes back through the poll.
  box.value = "";
  try {
    await socket.emit("chat", { name: $("name").value.trim() || "anonymous", text });
  } catch (err) {
    // Give the text back rather than lose it, and say why.
    if (!box.value) box.value = text;
    showNotice(`Not sent (${cut(String(err?.message), 200)}); try again in a moment.`);
  }
});

showWire(socket, $("wire-list"), $("wire-role"));

function showNotice(text) {
  $("notice").textContent = text;
  $("notice").hidden = false;
}
