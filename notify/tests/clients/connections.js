// Stock socket.io-client sessions, each from the address a trusted proxy reports in
// X-Forwarded-For, driven over stdin, one command a line:
//   open <address>  opens a session (its own connection) and prints
//                   {"step":"open","id":n,"connected":true|false,"error":...}
//   close <id>      closes session n and prints {"step":"closed","id":n}
// Usage: node connections.js <url>
const { io } = require("socket.io-client");
const readline = require("readline");

const [url] = process.argv.slice(2);
const sockets = [];

function open(address) {
  const socket = io(url, {
    forceNew: true, // a connection of its own, not one multiplexed with the others
    reconnection: false,
    extraHeaders: { "X-Forwarded-For": address },
  });
  const id = sockets.push(socket) - 1;
  socket.once("connect", () => console.log(JSON.stringify({ step: "open", id, connected: true })));
  socket.once("connect_error", (err) =>
    console.log(JSON.stringify({ step: "open", id, connected: false, error: err.message })),
  );
}

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const [command, arg] = line.trim().split(/\s+/);
  if (command === "open") {
    open(arg);
  } else if (command === "close") {
    sockets[Number(arg)].disconnect();
    console.log(JSON.stringify({ step: "closed", id: Number(arg) }));
  }
});
console.log(JSON.stringify({ step: "ready" }));
