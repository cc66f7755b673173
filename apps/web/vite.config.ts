import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// The console is served by bulwark-server from dist/; in development `pnpm dev` proxies the API.
export default defineConfig({
  plugins: [react()],
  build: { outDir: "dist", emptyOutDir: true },
  server: { proxy: { "/healthz": "http://127.0.0.1:8080", "/api": "http://127.0.0.1:8080" } },
});
