# The reading service: an ONNX export served by onnxruntime, without TensorFlow.
#   python ocr_captcha.py --export-lite model/ocr_captcha.onnx     # once, from the trained .keras model
#   docker build -t ocr-captcha-service .
#   docker run --rm -p 8000:8000 -v "$PWD/model:/models:ro" -e OCR_CAPTCHA_TOKEN=change-me ocr-captcha-service
# The container reads /models/ocr_captcha.onnx. To bake a model into the image instead, add the instruction
#   COPY model/ocr_captcha.onnx /models/ocr_captcha.onnx
# after the package's COPY (.dockerignore lets that one file through).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements-service.txt .
RUN pip install --no-cache-dir -r requirements-service.txt
COPY captcha_reader/ captcha_reader/

USER nobody
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"]
# Exec form: the server is PID 1 and gets SIGTERM from `docker stop`, finishing requests in flight.
CMD ["python", "-m", "captcha_reader.service", "--model", "/models/ocr_captcha.onnx", "--host", "0.0.0.0", "--port", "8000"]
