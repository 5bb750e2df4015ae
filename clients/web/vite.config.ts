// Builds the web view into the server's package (server/sluice/web/static, not committed),
// which the server serves on SLUICE_HTTP_LISTEN. `npm run dev` serves it with hot reload and
// forwards the gRPC-Web calls to a running server (SLUICE_WEB_SERVER, default
// http://127.0.0.1:8080: start one with SLUICE_HTTP_LISTEN=127.0.0.1:8080 make run).
import { fileURLToPath } from "node:url";

import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));

export default defineConfig({
  plugins: [react()],
  resolve: {
    // The generated messages and services of the TypeScript client, shared, not copied.
    alias: { "@gen": here("../typescript/src/gen") },
    // The generated code lives outside this package: its imports of the protobuf runtime
    // must resolve to this package's copy, the one @connectrpc/connect-web uses.
    dedupe: ["@bufbuild/protobuf", "@connectrpc/connect"],
  },
  build: {
    outDir: here("../../server/sluice/web/static"),
    emptyOutDir: true,
    chunkSizeWarningLimit: 1024,
  },
  server: {
    proxy: {
      "^/sluice\\.v1\\.": {
        target: process.env["SLUICE_WEB_SERVER"] ?? "http://127.0.0.1:8080",
        changeOrigin: true,
      },
    },
  },
});
