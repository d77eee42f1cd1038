// A static web server for the test pages, on an origin of its own (127.0.0.1, a free
// port), the way the original system served its page apart from the alert server.
// Serves pages/* and the stock socket.io-client's browser builds from node_modules, as
// they are on npm: /socket.io.min.js (a global `io`) and /socket.io.esm.min.js.
// Prints {"origin":"http://127.0.0.1:PORT"} once listening; exits when stdin closes,
// so it ends with the test that started it.
// Usage: node serve-page.mjs
import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "node_modules/socket.io-client/dist");
const files = {
  "/socket.io.min.js": join(dist, "socket.io.min.js"),
  "/socket.io.esm.min.js": join(dist, "socket.io.esm.min.js"),
  "/original.html": join(here, "pages/original.html"),
  "/resume.html": join(here, "pages/resume.html"),
};
const types = { ".js": "text/javascript; charset=utf-8", ".html": "text/html; charset=utf-8" };

const server = createServer(async (request, response) => {
  const path = new URL(request.url, "http://page").pathname;
  const file = files[path];
  if (!file) {
    response.writeHead(404).end();
    return;
  }
  try {
    const body = await readFile(file);
    response.writeHead(200, { "content-type": types[file.slice(file.lastIndexOf("."))] });
    response.end(body);
  } catch (error) {
    response.writeHead(500).end(String(error));
  }
});
server.listen(0, "127.0.0.1", () => {
  console.log(JSON.stringify({ origin: `http://127.0.0.1:${server.address().port}` }));
});
process.stdin.resume();
process.stdin.on("end", () => process.exit(0));
