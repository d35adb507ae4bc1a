#!/usr/bin/env bash
# Regenerates every PNG from icon.svg. Needs rsvg-convert (librsvg2-bin) and ImageMagick.
# Tray states: ok (green dot), attention (amber dot with "!"), signed-out (grey, faded card).
set -euo pipefail
cd "$(dirname "$0")"
png() { rsvg-convert -w "$1" -h "$1" icon.svg -o "$2.tmp.png" && convert "$2.tmp.png" "PNG32:$2" && rm -f "$2.tmp.png"; }
png 32 32x32.png
png 128 128x128.png
png 256 128x128@2x.png
png 512 icon.png
png 64 tray-base.png
convert tray-base.png -fill '#1f9d55' -stroke white -strokewidth 3 -draw "circle 48,48 48,34" PNG32:tray-ok.png
convert tray-base.png -fill '#e8a317' -stroke white -strokewidth 3 -draw "circle 48,48 48,33" \
  -stroke none -fill white -draw "rectangle 46,39 50,51" -draw "rectangle 46,54 50,58" PNG32:tray-attention.png
convert tray-base.png -colorspace Gray -channel A -evaluate multiply 0.6 +channel PNG32:tray-signed-out.png
rm -f tray-base.png
