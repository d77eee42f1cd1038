// Stock socket.io-client with its default reconnection, and only what its docs show:
// `auth` as a function (called before every connection attempt) sends `since`, the last
// event seen, so a reconnect resumes. Prints JSON lines: connect, disconnect (with the
// reason), snapshot (recovered, missed offsets), alert (offset); runs until stdin closes.
// Usage: node follow.js <url>
const { io } = require("socket.io-client");

const [url] = process.argv.slice(2);
let since = null;
const print = (line) => console.log(JSON.stringify(line));
const socket = io(url, {
  transports: ["websocket"],
  reconnectionDelay: 100,
  reconnectionDelayMax: 500,
  auth: (cb) => cb(since ? { since } : {}),
});
socket.on("connect", () => print({ step: "connect" }));
socket.on("disconnect", (reason) => print({ step: "disconnect", reason }));
socket.on("snapshot", (snapshot) => {
  for (const event of snapshot.missed ?? []) since = { epoch: event.epoch, offset: event.offset };
  if (!since && snapshot.offset) since = { epoch: snapshot.epoch, offset: snapshot.offset };
  print({ step: "snapshot", recovered: snapshot.recovered ?? null, missed: (snapshot.missed ?? []).map((e) => e.offset) });
});
socket.on("alert", (event) => {
  since = { epoch: event.epoch, offset: event.offset };
  print({ step: "alert", offset: event.offset });
});
process.stdin.resume();
process.stdin.on("end", () => process.exit(0));
