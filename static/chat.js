// chat.js owns the chat page's behaviour: it turns the socket's events into
// lines on the screen and the form into "chat" events. It knows nothing about
// HTTP; all of that lives in client.js.
import { connect } from "./client.js";

const $ = (id) => document.getElementById(id);
const socket = connect();

// A random default name, so two fresh tabs are told apart at a glance.
$("name").value = "guest-" + Math.floor(Math.random() * 1000);

socket.onStatus((s) => {
  $("status").textContent = s;
  $("status").dataset.state = s; // the CSS colours the badge by state
});

socket.on("online", (n) => {
  $("online").textContent = String(n);
});

socket.onMissed(() => {
  const time = new Date().toLocaleTimeString();
  showNotice(`Connection was lost at ${time}; messages sent meanwhile may be missing.`);
});

// Every line is built with textContent, never innerHTML: a message is text
// from a stranger, and the browser must show it, not run it.
socket.on("chat", (msg) => {
  const li = document.createElement("li");
  const name = document.createElement("b");
  name.textContent = String(msg?.name ?? "?");
  const text = document.createElement("span");
  text.textContent = String(msg?.text ?? "");
  li.append(name, text);
  const list = $("messages");
  // Follow the conversation only if the reader was already at the bottom.
  const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
  list.append(li);
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
    showNotice(`Not sent (${err.message}); try again in a moment.`);
  }
});

function showNotice(text) {
  $("notice").textContent = text;
  $("notice").hidden = false;
}
