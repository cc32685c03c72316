// A page that uses Chart's React SDK exactly as its README shows, in dev mode, so that
// its iframe loads the mock at http://localhost:3000. Each callback is shown in #events
// and reported to the test's page server (POST /event), which the test awaits: polling
// the DOM over WebDriver while the SDK tears down its iframe is not reliable.
import React, { useState } from 'react';
import { createRoot } from 'react-dom/client';
import { useChartConnect } from '@chartapi/react-connect';

const params = new URLSearchParams(window.location.search);

function App() {
  const [events, setEvents] = useState([]);
  const log = (e) => {
    setEvents((all) => [...all, e]);
    fetch('/event', { method: 'POST', body: JSON.stringify(e) });
  };
  const { open } = useChartConnect({
    clientId: params.get('client_id'),
    state: params.get('state'),
    chartDevMode: true,
    providers: params.get('providers') ? params.get('providers').split(',') : undefined,
    metadata: { plan: 'pro' },
    onSuccess: ({ code, state }) => log({ kind: 'success', code, state }),
    onError: ({ errorMessage }) => log({ kind: 'error', errorMessage }),
    onClose: () => log({ kind: 'closed' }),
  });
  return (
    <main>
      <button id="open" onClick={() => open()}>Connect</button>
      <pre id="events">{JSON.stringify(events)}</pre>
    </main>
  );
}

createRoot(document.getElementById('root')).render(<App />);
