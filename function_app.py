"""The Azure Functions app (Python v2 programming model): one DFApp, one blueprint per concern.

Kept import-light: the Functions host imports this on every cold start, before the first notification.
"""

import azure.durable_functions as df
import azure.functions as func

from functions.calls import bp as calls_bp
from functions.outbound import bp as outbound_bp
from functions.prompts import bp as prompts_bp
from orchestrations.call_session import bp as session_bp
from orchestrations.queue_line import bp as queue_bp

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(calls_bp)
app.register_functions(outbound_bp)
app.register_functions(prompts_bp)
app.register_functions(session_bp)
app.register_functions(queue_bp)
