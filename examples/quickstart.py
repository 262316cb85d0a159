import otel_llm_usage
from openai import OpenAI

otel_llm_usage.instrument(console=True)  # one line per LLM call on stderr, a summary table at exit

client = OpenAI()
with otel_llm_usage.session("quickstart"), otel_llm_usage.run("hello", agent="greeter"):
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}])
print(reply.choices[0].message.content)
