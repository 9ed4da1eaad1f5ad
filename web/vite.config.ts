import { defineConfig } from 'vite';

// Built into NUCLEON_WEB_OUT (the build folder) when CMake builds it, else dist/.
export default defineConfig({
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: {
    outDir: process.env.NUCLEON_WEB_OUT ?? 'dist',
    emptyOutDir: true,
    target: 'es2020',
    assetsInlineLimit: 0,
    reportCompressedSize: false,
  },
});
