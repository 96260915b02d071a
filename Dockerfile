FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY models models
COPY studioctl studioctl
COPY webapi webapi
COPY workers workers
COPY migrations migrations
COPY templates templates
RUN pip install --no-cache-dir -e .
ENV PYTHONUNBUFFERED=1
EXPOSE 8000
CMD ["studioctl", "serve", "--host", "0.0.0.0", "--port", "8000"]
